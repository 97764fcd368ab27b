"""vpc-migrate: the in-VPC migration runner (see ``cli`` for the commands and exit codes).

Where things live:
    layouts.py     finding the migrations in a folder, in any tool's layout (Flyway, golang-migrate, Prisma...)
    files.py       one migration file: reading it, directives, SQL splitting, validation
    connection.py  coordinates, SSM parameter, IAM tokens, TLS, keepalives
    history.py     the history table
    plan.py        files vs history: states and drift
    locking.py     the migration advisory lock and who-blocks-whom
    engine.py      applying one migration with lock timeouts and retries
    output.py      progress, GitHub Actions commands, step summary and outputs
    errors.py      exit codes and the exception root
"""
