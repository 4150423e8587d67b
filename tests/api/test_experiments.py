"""Experiments: created from JSON or an uploaded YAML, validated, listed, deleted;
every mistake a problem+json naming the field."""

from __future__ import annotations

import pytest

from tests.api.conftest import DEMO_SITES, EXAMPLE, create, heart_spec

PROBLEM = "application/problem+json"


def test_an_experiment_created_from_json_is_listed_and_read_back_without_data_sources(client):
    experiment_id = create(client, heart_spec(rounds=4))
    listed = client.get("/api/experiments").json()
    assert [e["id"] for e in listed] == [experiment_id]
    got = client.get(f"/api/experiments/{experiment_id}").json()
    assert got["name"] == "heart-disease"
    assert got["sites"] == DEMO_SITES
    assert (got["rounds"], got["model"], got["strategy"], got["privacy"]) == (
        4, "logistic", "fedavg", "none",
    )  # fmt: skip
    assert all(set(site) >= {"name"} and "data" not in site for site in got["spec"]["sites"])
    assert got["spec"]["schema"]["target"] == {
        "column": "num", "positive": None, "negative": None, "positiveAbove": 0.0,
    }  # fmt: skip


def test_the_example_yaml_uploads_as_it_is(client):
    with EXAMPLE.open("rb") as handle:
        response = client.post("/api/experiments/upload", files={"file": ("e.yaml", handle)})
    assert response.status_code == 201, response.text
    assert response.json()["sites"] == DEMO_SITES
    assert response.json()["rounds"] == 15


def test_an_upload_with_a_python_tag_is_refused_as_invalid_yaml(client):
    text = b"name: !!python/object/apply:os.system ['echo hi']\n"
    response = client.post("/api/experiments/upload", files={"file": ("e.yaml", text)})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"] == [{"field": "", "message": "not valid YAML at line 1"}]


def test_an_upload_over_the_size_limit_is_refused(client):
    big = b"# padding\n" * 30_000
    response = client.post("/api/experiments/upload", files={"file": ("e.yaml", big)})
    assert response.status_code == 413
    assert response.json()["detail"] == "the body is over the limit of 262144 bytes"


def test_a_chunked_body_without_a_length_is_cut_off_at_the_limit(client):
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"spec": {"name": "'
        for _ in range(300):
            yield b"x" * 1024
        yield b'"}}'

    response = client.post(
        "/api/experiments", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["detail"] == "the body is over the limit of 262144 bytes"


def test_a_site_the_service_does_not_serve_and_a_data_path_are_named_in_the_problem(client):
    spec = heart_spec(
        sites=["nowhere", {"name": "hungary", "data": {"source": "csv", "path": "/etc/passwd"}}]
    )
    response = client.post("/api/experiments", json={"spec": spec})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"] == [
        {
            "field": "sites[0].name",
            "message": "unknown site 'nowhere'; this service serves: cleveland, hungary, "
            "switzerland, va-long-beach",
        },
        {
            "field": "sites[1].data",
            "message": "the service holds each site's data source; name the site only",
        },
    ]


SERVER_ONLY = "names a file, code or image on the server's side: not through the API (medfl run)"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"model": {"type": "custom", "importPath": "os:system"}}, "model.type",
         f"'custom' (an importPath) {SERVER_ONLY}"),
        ({"model": {"type": "logistic", "pretrained": {"path": "/etc/shadow"}}},
         "model.pretrained", SERVER_ONLY),
        ({"runtime": {"image": "evil/image:1"}}, "runtime", SERVER_ONLY),
        ({"sites": [{"name": "cleveland", "placement": {"volume": {"hostPath": "/"}}}]},
         "sites[0].placement", "set by the service for its sites; a request names the site only"),
    ],
    ids=["custom-model", "pretrained-file", "runtime-image", "host-path"],
)  # fmt: skip
def test_what_names_server_files_code_or_images_is_refused(client, change, field, message):
    response = client.post("/api/experiments", json={"spec": heart_spec() | change})
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": field, "message": message}]


def test_site_fields_the_service_sets_are_refused_by_name(client):
    spec = heart_spec(sites=[{"name": "cleveland", "columns": {"age": "alter"}}])
    response = client.post("/api/experiments", json={"spec": spec})
    assert response.json()["errors"] == [
        {
            "field": "sites[0].columns",
            "message": "set by the service for its sites; a request names the site only",
        }
    ]


NAME_RULE = "use lower-case letters, digits and '-', starting and ending with a letter or digit"
SERVED = "cleveland, hungary, switzerland, va-long-beach"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"training": {"rounds": 0}}, "training.rounds", "Input should be greater than or equal to 1"),  # noqa: E501
        ({"name": "Heart Disease"}, "name", NAME_RULE),
        ({"colour": "red"}, "colour", "unknown field"),
        ({"sites": []}, "sites", f"name at least one site; this service serves: {SERVED}"),
    ],
)  # fmt: skip
def test_an_invalid_spec_is_a_problem_naming_the_field(client, change, field, message):
    response = client.post("/api/experiments", json={"spec": heart_spec() | change})
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": field, "message": message}]


def test_a_request_body_with_an_unknown_field_is_named(client):
    response = client.post("/api/experiments", json={"spec": heart_spec(), "colour": "red"})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "colour", "in": "body", "message": "Extra inputs are not permitted"}
    ]


def test_validate_reports_every_sites_rows_and_the_model_features(client):
    response = client.post("/api/experiments/validate", json={"spec": heart_spec()})
    assert response.status_code == 200, response.text
    found = response.json()
    rows = {s["site"]: s["rows"] for s in found["sites"]}
    assert rows == {"cleveland": 303, "hungary": 294, "switzerland": 123, "va-long-beach": 200}
    assert found["features"][:5] == ["age", "trestbps", "chol", "thalch", "oldpeak"]


def test_validate_of_a_stored_experiment_names_a_missing_column_and_its_site(client):
    spec = heart_spec()
    spec["schema"]["numeric"] = [*spec["schema"]["numeric"], "nosuch"]
    experiment_id = create(client, spec)
    response = client.post(f"/api/experiments/{experiment_id}/validate")
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert errors[0]["site"] == "cleveland"
    assert "nosuch" in errors[0]["message"]


def test_a_deleted_experiment_is_gone(client):
    experiment_id = create(client, heart_spec())
    assert client.delete(f"/api/experiments/{experiment_id}").status_code == 204
    response = client.get(f"/api/experiments/{experiment_id}")
    assert response.status_code == 404
    assert response.json()["detail"] == f"no experiment {experiment_id!r}"
    assert client.delete(f"/api/experiments/{experiment_id}").status_code == 404


def test_an_unknown_experiment_is_not_found_for_validate_and_runs(client):
    for method, path in (("POST", "validate"), ("GET", "")):
        response = client.request(method, f"/api/experiments/nope/{path}".rstrip("/"))
        assert (response.status_code, response.json()["detail"]) == (404, "no experiment 'nope'")
    response = client.get("/api/runs", params={"experimentId": "nope"})
    assert (response.status_code, response.json()["detail"]) == (404, "no experiment 'nope'")
