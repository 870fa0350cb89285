"""Executor targets for benchmarks."""


def noop(test):
    return None
