from django.apps import AppConfig


class RankingConfig(AppConfig):
    name = "ranking"
    verbose_name = "Comparisons"

    def ready(self) -> None:
        # Ranking-task preparation and exports are jobs of the executor (sampler.jobs).
        from ranking.exports import jobs as export_jobs
        from ranking.rank import jobs as preparation_jobs

        del export_jobs, preparation_jobs
