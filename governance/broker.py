"""kombu's Redis transport, keeping one client per channel for publishing.

kombu builds a new ``redis.Redis`` for every message it publishes (``Channel._create_client``),
and building one fills a table of some 170 response callbacks: a third of the CPU that
``send_task`` spends here, paid on every registration. A client draws its connections from the
channel's pool and is safe to share between threads, so one per channel does the same work.
The asynchronous client the worker consumes with is kombu's own, unchanged.
"""

from kombu.transport import redis
from kombu.utils.objects import cached_property


class Channel(redis.Channel):
    @cached_property
    def _shared_client(self):
        return super()._create_client()

    def _create_client(self, asynchronous=False):
        return super()._create_client(asynchronous=True) if asynchronous else self._shared_client


class Transport(redis.Transport):
    Channel = Channel
