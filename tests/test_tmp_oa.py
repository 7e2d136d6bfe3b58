def test_dump(client):
    r = client.get("/docs")
    print(r.status_code, r.content_type)
    print(r.get_data(as_text=True))
    r = client.get("/docs/static/swagger-ui-bundle.js")
    print(r.status_code, r.content_type)
