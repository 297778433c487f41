"""Kubernetes: kubectl and helm command lines, the chart's facts, the throwaway local cluster."""
