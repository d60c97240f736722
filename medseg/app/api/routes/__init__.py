"""The API's routers, one module per area; ``medseg.app.api.main.create_app`` includes them all."""
