"""The query KEDA's ``postgresql`` scaler runs to size the worker Deployment.

KEDA polls it (every ``pollingInterval`` seconds) and sets the Deployment's replicas to
``ceil(value / targetQueryValue)``, bounded by the ScaledObject's min and max, and to
zero (when the minimum is 0) while the value is at most ``activationTargetQueryValue``.
The value is the number of messages waiting or claimed on the queues the Deployment
serves: waiting ones need a replica to start, claimed ones need the replica that runs
them to stay. KEDA cannot pass parameters, so the queue names are written into the SQL
as literals; :func:`waiting_tests_query` is the one place that does it, and
``rhesis-monitor keda-query`` prints its result for the manifest
(deploy/kubernetes/base/worker-scaledobject.yaml; a test checks that they agree).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rhesis_pipeline.runs import queues as queue_names
from rhesis_pipeline.storage.queries import Q

#: What a queue name may be (as RHESIS_QUEUES accepts it): letters, digits, '.', '_' and
#: '-', not starting with a digit. Nothing else reaches the SQL text.
QUEUE_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9._-]*$")
#: The queues a worker consumes when RHESIS_QUEUES is not set: all of them.
ALL_QUEUES = (queue_names.TESTS, queue_names.CALLBACKS, queue_names.MAINTENANCE)


def waiting_tests_query(queues: Iterable[str] = ()) -> str:
    """The SQL (one line) whose single integer is the number of messages waiting or claimed
    on *queues* and their delay queues (``<queue>.DQ``: retries waiting for their
    backoff still need a worker). No queues means all of them (:data:`ALL_QUEUES`).
    Raises ValueError naming a queue that is not a valid queue name."""
    chosen = list(dict.fromkeys(queues)) or list(ALL_QUEUES)
    for name in chosen:
        if not QUEUE_NAME.match(name):
            raise ValueError(
                f"{name!r} is not a valid queue name "
                "(letters, digits, '.', '_' and '-'; not starting with a digit)"
            )
        if name.endswith((".DQ", ".XQ")):
            raise ValueError(
                f"{name!r} is a delay or dead-letter queue: name the queue itself "
                "(its delay queue is counted with it)"
            )
    served = [q for name in chosen for q in (name, f"{name}.DQ")]
    literals = ", ".join(f"'{q}'" for q in served)
    return " ".join(Q["keda_waiting_tests"].text.replace("{queues}", literals).split())
