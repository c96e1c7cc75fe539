import pytest
import redis

from mystocks_otel.integrations.redis import ClientHooks as RedisHooks


class Unprintable:
    def __str__(self):
        raise RuntimeError("telemetry must not call this into the caller's face")


def test_hook_failure_never_replaces_the_commands_own_outcome(redis_url):
    instrumentor = RedisHooks()
    instrumentor.instrument()
    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=2)
        # redis-py's packer rejects the argument before sending anything: that TypeError,
        # not the hook's RuntimeError from naming the command, must reach the caller.
        with pytest.raises(TypeError):
            client.execute_command(Unprintable())
    finally:
        instrumentor.uninstrument()


def test_cache_gauges_come_from_info_of_the_first_synchronous_client_seen(throwaway_redis):
    from mystocks_otel._internal.state import counter, gauge

    instrumentor = RedisHooks()
    instrumentor.instrument()
    try:
        assert instrumentor.update_cache_metrics() == {}  # no client seen yet
        client = redis.Redis.from_url(throwaway_redis["url"], socket_timeout=2)
        client.set("a", "x")
        client.select(1)  # keys of every database count
        client.set("b", "y")
        report = instrumentor.update_cache_metrics()
        assert report["keys"] == 2 and report["evictions"] == 0
        assert report["memory_bytes"] == pytest.approx(client.info()["used_memory"], rel=0.5)
        assert gauge("mystocks.cache.keys").value("redis") == 2
        assert gauge("mystocks.cache.memory_usage").value("redis") == report["memory_bytes"]
        assert counter("mystocks.cache.evictions").value("redis") == 0
    finally:
        instrumentor.uninstrument()


def test_async_clients_are_never_polled_from_the_poller_thread(redis_url):
    import redis.asyncio

    instrumentor = RedisHooks()
    client = redis.asyncio.Redis.from_url(redis_url)
    instrumentor.clients.add(client)  # as the async wrapper would after a command
    assert instrumentor.update_cache_metrics() == {}
