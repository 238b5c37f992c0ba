"""``locustfile.py`` is run by Locust (``bench/api.py``), never imported by pytest: importing locust
monkey-patches the process with gevent."""

collect_ignore = ["locustfile.py"]
