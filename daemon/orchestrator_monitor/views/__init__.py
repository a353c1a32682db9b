"""What the terminal and the web both show: the runs and one run (`runs`, pure), read from the database
(`reader`), and the health report that `orchestrator health` prints (`health`)."""
