"""Run reports: numbers (pure, `numbers`), drawings (pure, `drawing`), the page (`page`), and the pass
that reads, writes and announces them (`reporter`)."""
