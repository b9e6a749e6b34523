ATTACH 'mongodb://app:${MONGO_PASSWORD}@localhost' AS mongo (TYPE mongodb);
