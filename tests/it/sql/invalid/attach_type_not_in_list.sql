ATTACH './warehouse' AS lake (warehouse '/tmp/w');
