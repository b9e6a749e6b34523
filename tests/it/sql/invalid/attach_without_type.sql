ATTACH 'mongodb://localhost' AS mongo;
