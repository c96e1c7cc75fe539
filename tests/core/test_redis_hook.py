import pytest
import redis

from mystocks_otel.integrations.redis import RedisInstrumentor


class Unprintable:
    def __str__(self):
        raise RuntimeError("telemetry must not call this into the caller's face")


def test_hook_failure_never_replaces_the_commands_own_outcome(redis_url):
    instrumentor = RedisInstrumentor()
    instrumentor.instrument()
    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=2)
        # redis-py's packer rejects the argument before sending anything: that TypeError,
        # not the hook's RuntimeError from naming the command, must reach the caller.
        with pytest.raises(TypeError):
            client.execute_command(Unprintable())
    finally:
        instrumentor.uninstrument()
