package main

import (
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/connector/forwardconnector"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/debugexporter"
	"go.opentelemetry.io/collector/exporter/otlpexporter"
	"go.opentelemetry.io/collector/exporter/otlphttpexporter"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/extension/memorylimiterextension"
	"go.opentelemetry.io/collector/extension/zpagesextension"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/batchprocessor"
	"go.opentelemetry.io/collector/processor/memorylimiterprocessor"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"
)

// components lists the factories compiled in, as ocb's generated components.go does.
// Every one of them is part of the core collector repository packaged by Debian.
func components() (otelcol.Factories, error) {
	var err error
	factories := otelcol.Factories{Telemetry: otelconftelemetry.NewFactory()}

	if factories.Extensions, err = otelcol.MakeFactoryMap[extension.Factory](
		zpagesextension.NewFactory(),
		memorylimiterextension.NewFactory(),
	); err != nil {
		return otelcol.Factories{}, err
	}
	if factories.Receivers, err = otelcol.MakeFactoryMap[receiver.Factory](
		otlpreceiver.NewFactory(),
	); err != nil {
		return otelcol.Factories{}, err
	}
	if factories.Processors, err = otelcol.MakeFactoryMap[processor.Factory](
		batchprocessor.NewFactory(),
		memorylimiterprocessor.NewFactory(),
	); err != nil {
		return otelcol.Factories{}, err
	}
	if factories.Exporters, err = otelcol.MakeFactoryMap[exporter.Factory](
		debugexporter.NewFactory(),
		otlpexporter.NewFactory(),
		otlphttpexporter.NewFactory(),
	); err != nil {
		return otelcol.Factories{}, err
	}
	if factories.Connectors, err = otelcol.MakeFactoryMap[connector.Factory](
		forwardconnector.NewFactory(),
	); err != nil {
		return otelcol.Factories{}, err
	}

	// The module maps feed `otelcol components`.
	version := " v" + collectorVersion
	factories.ExtensionModules = modules(factories.Extensions, map[string]string{
		"zpages":         "go.opentelemetry.io/collector/extension/zpagesextension",
		"memory_limiter": "go.opentelemetry.io/collector/extension/memorylimiterextension",
	}, version)
	factories.ReceiverModules = modules(factories.Receivers, map[string]string{
		"otlp": "go.opentelemetry.io/collector/receiver/otlpreceiver",
	}, version)
	factories.ProcessorModules = modules(factories.Processors, map[string]string{
		"batch":          "go.opentelemetry.io/collector/processor/batchprocessor",
		"memory_limiter": "go.opentelemetry.io/collector/processor/memorylimiterprocessor",
	}, version)
	factories.ExporterModules = modules(factories.Exporters, map[string]string{
		"debug":     "go.opentelemetry.io/collector/exporter/debugexporter",
		"otlp_grpc": "go.opentelemetry.io/collector/exporter/otlpexporter",
		"otlp":      "go.opentelemetry.io/collector/exporter/otlpexporter",
		"otlp_http": "go.opentelemetry.io/collector/exporter/otlphttpexporter",
		"otlphttp":  "go.opentelemetry.io/collector/exporter/otlphttpexporter",
	}, version)
	factories.ConnectorModules = modules(factories.Connectors, map[string]string{
		"forward": "go.opentelemetry.io/collector/connector/forwardconnector",
	}, version)
	return factories, nil
}

// modules maps every registered type (aliases included) to its Go module.
func modules[T component.Factory](factories map[component.Type]T, paths map[string]string, version string) map[component.Type]string {
	out := make(map[component.Type]string, len(factories))
	for typ := range factories {
		if path, ok := paths[typ.String()]; ok {
			out[typ] = path + version
		}
	}
	return out
}
