import sqlalchemy as sa


def test_each_test_gets_an_empty_postgres_database(imrt_engine):
    with imrt_engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")) == 0
        assert conn.scalar(sa.text("SHOW server_version_num")).isdigit()
