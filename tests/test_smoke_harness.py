async def test_db(pool):
    assert await pool.fetchval("select count(*) from schema_migrations") == 1
