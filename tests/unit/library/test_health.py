from mystocks_otel._internal.state import INSTRUMENTS
from mystocks_otel._internal.health import HealthRegistry


def test_unknown_names_collapse_to_other_so_state_stays_bounded():
    registry = HealthRegistry(INSTRUMENTS)
    for i in range(1000):
        registry.report(components={f"worker-{i}": True}, dependencies={f"svc-{i}": False})
    report = registry.report(components={"database": True})
    assert report["components"] == {"other": True, "database": True}
    assert report["dependencies"] == {"other": False}
    assert len(registry._app_reported) == 3


def test_app_reports_win_over_probes_for_the_window_the_prober_gives():
    registry = HealthRegistry(INSTRUMENTS)
    registry.report(dependencies={"redis": False})
    probed = registry.probed(dependencies={"redis": True}, app_wins_for=60)
    assert probed["dependencies"]["redis"] is False
    expired = registry.probed(dependencies={"redis": True}, app_wins_for=0)
    assert expired["dependencies"]["redis"] is True


def test_probes_set_names_the_app_never_reported():
    registry = HealthRegistry(INSTRUMENTS)
    registry.report(components={"database": True})
    probed = registry.probed(components={"cache": False}, dependencies={"redis": False},
                             app_wins_for=60)
    assert probed == {"components": {"database": True, "cache": False},
                      "dependencies": {"redis": False}}


def test_the_probe_never_opens_a_pools_first_connection(tmp_path):
    import sqlalchemy as sa

    from mystocks_otel._internal.health import probe_engines

    engine = sa.create_engine(f"sqlite:///{tmp_path}/probe.db")
    assert probe_engines([engine], INSTRUMENTS) == {}  # unused: pinging would make the pool's first connection
    assert engine.pool.checkedin() == 0
    with engine.connect() as conn:  # the app connects, with whatever hooks it registered
        conn.exec_driver_sql("SELECT 1")
    assert probe_engines([engine], INSTRUMENTS) == {"sqlite": True}
    broken = sa.create_engine(f"sqlite:///{tmp_path}/missing/dir/x.db", poolclass=sa.pool.NullPool)
    assert probe_engines([broken], INSTRUMENTS) == {"sqlite": False}  # keeps no connection: always pinged
