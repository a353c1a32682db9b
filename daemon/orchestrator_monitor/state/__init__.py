"""The executor's state database: tables, engines, reads and the monitor's few writes."""
