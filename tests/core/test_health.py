from mystocks_otel.integrations.health import HealthRegistry


def test_unknown_names_collapse_to_other_so_state_stays_bounded():
    registry = HealthRegistry()
    for i in range(1000):
        registry.report(components={f"worker-{i}": True}, dependencies={f"svc-{i}": False})
    report = registry.report(components={"database": True})
    assert report["components"] == {"other": True, "database": True}
    assert report["dependencies"] == {"other": False}
    assert len(registry._app_reported) == 3


def test_app_reports_win_over_probes_for_the_window_the_prober_gives():
    registry = HealthRegistry()
    registry.report(dependencies={"redis": False})
    probed = registry.probed(dependencies={"redis": True}, app_wins_for=60)
    assert probed["dependencies"]["redis"] is False
    expired = registry.probed(dependencies={"redis": True}, app_wins_for=0)
    assert expired["dependencies"]["redis"] is True


def test_probes_set_names_the_app_never_reported():
    registry = HealthRegistry()
    registry.report(components={"database": True})
    probed = registry.probed(components={"cache": False}, dependencies={"redis": False},
                             app_wins_for=60)
    assert probed == {"components": {"database": True, "cache": False},
                      "dependencies": {"redis": False}}
