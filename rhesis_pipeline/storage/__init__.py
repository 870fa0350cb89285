"""The one boundary to Postgres: connections, transactions, named SQL, schema.

Everything that talks to the database goes through here: the engine and its transactions
(:mod:`.db`), every SQL statement by name (:mod:`.queries`, loaded from
``sql/queries.sql``), the schema's migrations (:mod:`.migrate`), the embedded server a
machine without Postgres falls back to (:mod:`.embedded`), acting as a tenant under
row-level security (:mod:`.tenancy`) and the tenant context that selects it
(:mod:`.tenant_context`), advisory-lock keys (:mod:`.locks`), and how a loop lives
through a lost connection (:mod:`.outage`). Nothing outside this package imports the
database driver.
"""
