"""The monitor's own record in `.monitor/monitor.db`: which runs it marked, archived and reported
(`runs`), heartbeats, event numbering and the archival_log outbox (`monitor_db`)."""
