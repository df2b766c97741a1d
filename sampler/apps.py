from django.apps import AppConfig


class SamplerConfig(AppConfig):
    name = "sampler"
    verbose_name = "Models, generation and training"
