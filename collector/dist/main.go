// Program otelcol is the mystocks-otel Collector distribution: core components only.
// It is what the OpenTelemetry Collector Builder (ocb) would generate from a manifest,
// written by hand because ocb needs the Go module proxy; collector/build.sh compiles it
// in GOPATH mode against Debian's packaged collector sources.
package main

import (
	"log"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/otelcol"
)

// collectorVersion is the packaged collector's version; build.sh sets it with -ldflags -X.
var collectorVersion = "0.0.0-dev"

func main() {
	info := component.BuildInfo{
		Command:     "otelcol",
		Description: "mystocks-otel Collector (core components, built from Debian sources)",
		Version:     collectorVersion + "-mystocks",
	}
	set := otelcol.CollectorSettings{
		BuildInfo: info,
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				// file: for --config=PATH, env: for ${env:VAR:-default}, yaml: for --set.
				ProviderFactories: []confmap.ProviderFactory{
					envprovider.NewFactory(),
					fileprovider.NewFactory(),
					yamlprovider.NewFactory(),
				},
				DefaultScheme: "env",
			},
		},
	}
	if err := otelcol.NewCommand(set).Execute(); err != nil {
		log.Fatal(err)
	}
}
