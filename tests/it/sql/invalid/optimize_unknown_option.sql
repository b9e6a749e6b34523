OPTIMIZE lake.shop.orders WITH (target_file_size = '64MiB', min_files = 5);
