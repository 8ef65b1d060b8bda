-- wrk request: one JSON webhook event (the same for every system under test).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"id":"evt-1","title":"disk full on db-1","severity":"critical","host":"db-1"}'
