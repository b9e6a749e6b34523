ATTACH 'postgres://localhost' AS pg (TYPE postgres);
