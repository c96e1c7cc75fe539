from mystocks_otel.integrations.health import HealthRegistry


def test_unknown_names_collapse_to_other_so_state_stays_bounded():
    registry = HealthRegistry()
    for i in range(1000):
        registry.report(components={f"worker-{i}": True}, dependencies={f"svc-{i}": False})
    report = registry.report(components={"database": True})
    assert report["components"] == {"other": True, "database": True}
    assert report["dependencies"] == {"other": False}
    assert len(registry._pinned) == 3


def test_app_reports_win_over_probes_while_pinned():
    registry = HealthRegistry(pin_seconds=60)
    registry.report(dependencies={"redis": False})
    after_probe = registry.report(dependencies={"redis": True}, pin=False)
    assert after_probe["dependencies"]["redis"] is False
    expired = HealthRegistry(pin_seconds=0)
    expired.report(dependencies={"redis": False})
    assert expired.report(dependencies={"redis": True}, pin=False)["dependencies"]["redis"] is True
