"""What happens to a finished run once it is marked: archive it, then report it (`pipeline`), run by the
daemon's worker (`worker`) or a command. It sits above both `archive` and `reports`, which never see each other."""
