"""eBPF C sources of mfd, installed as the package ``mfd.bpf`` (data only)."""
