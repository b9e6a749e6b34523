SELECT '${not closed' AS x;
