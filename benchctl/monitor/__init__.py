"""Monitoring: the Prometheus/Pushgateway/Grafana job's pieces benchctl itself uses (pushed result names,
target files, the Prometheus client)."""
