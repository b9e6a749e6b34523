ATTACH mongodb AS mongo (TYPE mongodb);
