"""Engines turn source objects into converted tables. They read format declarations; none names a format."""
