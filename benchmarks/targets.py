"""Executor targets for benchmarks."""


def noop(test):
    return None


def sleep(test):
    import time

    time.sleep(float(test.get("sleep_s", 1)))
    return None
