pytest_plugins = ["tests.fix_pg", "tests.fix_cli", "tests.fix_control_plane", "tests.fix_pulumi", "tests.fix_bootstrap"]
