ATTACH 'mongodb://localhost' AS mongo (TYPE mongodb, sample_size 'lots');
