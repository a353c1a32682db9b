"""The monitor's own record, in `.monitor/monitor.db` or the `monitor_` tables of a shared PostgreSQL
(`store`): which runs it marked, archived and reported and which daemon owes them work (`runs`),
heartbeats and event numbering (`monitor_db`), and the daemons sharing the database (`members`)."""
