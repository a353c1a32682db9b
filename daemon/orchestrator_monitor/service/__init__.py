"""The daemon: its wiring (`daemon`), the supervisor and its scheduled health checks, the safe-mode machine
(pure), escalation, metrics, systemd's notify protocol, signals and configuration reload."""
