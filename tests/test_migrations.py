"""An existing install upgrades without losing data: a database at the first release's schema,
with data in it, migrates to the current schema and keeps every row and value.

The first release's schema is the set of migrations it shipped (below); the data is written
through the historical models of that state, as an old install would hold it.
"""

from functools import partial

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

FIRST_RELEASE = [
    ("accounts", "0001_trainer_group"),
    ("labeling", "0005_guidelines_and_red_team"),
    ("ranking", "0002_ranking_guideline_version"),
    ("sampler", "0004_modelcomparison"),
]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def _latest():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def _migrate_back(app: str, migration: str):
    """Every app at its latest migration but ``app``, at ``migration``; its historical apps,
    with the default project where that state has projects (``_default_project``)."""
    apps = _migrate([node for node in _latest() if node[0] != app] + [(app, migration)])
    _default_project(apps)
    return apps


def _default_project(apps) -> None:
    """The default project, as an install that has used it holds it. A row written without a
    project takes it by the current code's default (project_default_id), which finds it by its
    id alone but would make a missing one with every column of the current schema, which an
    older state lacks."""
    try:
        Project = apps.get_model("ranking", "Project")
    except LookupError:
        return
    Project.objects.get_or_create(
        slug="default", defaults={"name": "Default project", "status": "active"}
    )


def _exchange(apps, owner, *, prompt="hi", reply="hello", **conversation):
    """A new conversation of ``owner``'s: a user turn and the assistant's reply to it."""
    Conversation = apps.get_model("labeling", "Conversation")
    Message = apps.get_model("labeling", "Message")
    conversation = Conversation.objects.create(owner=owner, **conversation)
    asked = Message.objects.create(
        conversation=conversation, role="user", content=prompt, origin="human"
    )
    answered = Message.objects.create(
        conversation=conversation, parent=asked, role="assistant", content=reply
    )
    return asked, answered


def _old_install(apps) -> dict:
    """Rows across the three apps, linked as the first release linked them."""
    User = apps.get_model("auth", "User")
    ModelVersion = apps.get_model("sampler", "ModelVersion")
    GenerationJob = apps.get_model("sampler", "GenerationJob")
    Sample = apps.get_model("sampler", "Sample")
    TrainingRun = apps.get_model("sampler", "TrainingRun")
    Conversation = apps.get_model("labeling", "Conversation")
    Message = apps.get_model("labeling", "Message")
    RankingTask = apps.get_model("ranking", "RankingTask")
    Candidate = apps.get_model("ranking", "Candidate")
    Ranking = apps.get_model("ranking", "Ranking")
    Assignment = apps.get_model("ranking", "Assignment")

    writer = User.objects.create(username="writer", password="!")
    ranker = User.objects.create(username="ranker", password="!")
    version = ModelVersion.objects.create(
        name="policy-v1", path="/models/policy-v1", is_active=True
    )
    conversation = Conversation.objects.create(owner=writer, title="weekend", status="finished")
    prompt = Message.objects.create(
        conversation=conversation, role="user", content="any plans for the weekend?", author=writer
    )
    job = GenerationJob.objects.create(
        model_version=version,
        prefix_message=prompt,
        requested_by=writer,
        status="succeeded",
        n=2,
        seed=7,
        params={"temperature": 0.8},
    )
    samples = [
        Sample.objects.create(
            job=job,
            index=i,
            text=text,
            token_count=4,
            finish_reason="end_of_turn",
            logprob_sum=-3.5,
        )
        for i, text in enumerate(("not yet, you?", "i am going hiking!"))
    ]
    replies = [
        Message.objects.create(
            conversation=conversation,
            parent=prompt,
            role="assistant",
            content=sample.text,
            origin="model",
            sample=sample,
            model_version=version,
        )
        for sample in samples
    ]
    reply = replies[0]
    task = RankingTask.objects.create(
        source_message=reply,
        prefix_message=prompt,
        generation_job=job,
        model_version=version,
        source_owner=writer,
        status="complete",
        rankings_count=1,
    )
    candidates = [
        Candidate.objects.create(task=task, message=message, is_source=i == 0, position=i)
        for i, message in enumerate(replies)
    ]
    now = timezone.now()
    assignment = Assignment.objects.create(
        task=task,
        trainer=ranker,
        status="submitted",
        presentation_order=[c.pk for c in candidates],
        expires_at=now,
    )
    ranking = Ranking.objects.create(
        task=task,
        assignment=assignment,
        ranker=ranker,
        ordering=[[candidates[1].pk], [candidates[0].pk]],
        presentation_order=[c.pk for c in candidates],
        rationale="more specific",
        started_at=now,
        duration_ms=41250,
    )
    run = TrainingRun.objects.create(
        kind="reward", status="succeeded", config={"learning_rate": 2e-5}, started_by=ranker
    )
    GuidelineVersion = apps.get_model("labeling", "GuidelineVersion")
    guidelines = [
        GuidelineVersion.objects.create(number=number, text=f"# Rules v{number}")
        for number in (1, 2)
    ]
    return {
        "guidelines": [g.pk for g in guidelines],
        "version": version.pk,
        "conversation": conversation.pk,
        "reply": reply.pk,
        "job": job.pk,
        "samples": [s.pk for s in samples],
        "task": task.pk,
        "ranking": ranking.pk,
        "ordering": ranking.ordering,
        "run": run.pk,
    }


# On SQLite in the unit tier and on PostgreSQL in the integration tier.
@pytest.mark.parametrize(
    "tier", ["unit", pytest.param("integration", marks=pytest.mark.integration)]
)
@pytest.mark.django_db(transaction=True)
def test_a_first_release_database_with_data_migrates_to_the_current_schema_intact(tier):
    try:
        ids = _old_install(_migrate(FIRST_RELEASE))
        apps = _migrate(_latest())

        version = apps.get_model("sampler", "ModelVersion").objects.get(pk=ids["version"])
        assert version.name == "policy-v1" and version.path == "/models/policy-v1"
        assert version.backend == "transformers"  # the field this round added, at its default
        job = apps.get_model("sampler", "GenerationJob").objects.get(pk=ids["job"])
        assert job.status == "succeeded" and job.params == {"temperature": 0.8}
        assert job.prefix_message_id is not None and job.seed == 7
        samples = apps.get_model("sampler", "Sample").objects.filter(job_id=job.pk)
        assert sorted(samples.values_list("text", flat=True)) == [
            "i am going hiking!",
            "not yet, you?",
        ]
        reply = apps.get_model("labeling", "Message").objects.get(pk=ids["reply"])
        assert reply.sample_id == ids["samples"][0] and reply.conversation_id == ids["conversation"]
        ranking = apps.get_model("ranking", "Ranking").objects.get(pk=ids["ranking"])
        assert ranking.task_id == ids["task"] and ranking.ordering == ids["ordering"]
        assert ranking.rationale == "more specific" and ranking.duration_ms == 41250
        candidates = apps.get_model("ranking", "Candidate").objects.filter(task_id=ids["task"])
        assert candidates.count() == 2
        assignment = apps.get_model("ranking", "Assignment").objects.get(task_id=ids["task"])
        assert assignment.status == "submitted" and ranking.assignment_id == assignment.pk
        run = apps.get_model("sampler", "TrainingRun").objects.get(pk=ids["run"])
        assert run.kind == "reward" and run.config == {"learning_rate": 2e-5}
        # Rows made before projects belong to the default project; its guidelines keep their
        # numbers (every project numbers its own versions from 1).
        default = apps.get_model("ranking", "Project").objects.get(slug="default")
        conversation = apps.get_model("labeling", "Conversation").objects.get(
            pk=ids["conversation"]
        )
        assert conversation.project_id == default.pk and ranking.project_id == default.pk
        guidelines = apps.get_model("labeling", "GuidelineVersion").objects.filter(
            pk__in=ids["guidelines"]
        )
        assert sorted(guidelines.values_list("project_id", "number", "text")) == [
            (default.pk, 1, "# Rules v1"),
            (default.pk, 2, "# Rules v2"),
        ]
    finally:
        _migrate(_latest())


@pytest.mark.django_db(transaction=True)
def test_an_install_whose_default_project_had_trainer_groups_opens_it_to_every_trainer():
    try:
        apps = _migrate([("ranking", "0008_trust_estimates")])
        Group = apps.get_model("auth", "Group")
        Project = apps.get_model("ranking", "Project")
        # Migration 0005 makes it when it is missing: a database migrated from nothing holds it
        # already (one an earlier transactional test emptied does not).
        default, _ = Project.objects.get_or_create(slug="default", defaults={"name": "Default"})
        other = Project.objects.create(name="Experts", slug="experts")
        experts = Group.objects.create(name="experts")
        default.trainer_groups.add(experts)
        other.trainer_groups.add(experts)
        apps = _migrate(_latest())
        Project = apps.get_model("ranking", "Project")
        assert not Project.objects.get(slug="default").trainer_groups.exists()
        assert list(
            Project.objects.get(slug="experts").trainer_groups.values_list("name", flat=True)
        ) == ["experts"]
    finally:
        _migrate(_latest())


@pytest.mark.django_db(transaction=True)
def test_tasks_that_failed_before_sources_were_given_back_release_them_unless_filtered():
    try:
        apps = _migrate_back("ranking", "0009_default_project_open")
        User = apps.get_model("auth", "User")
        ModelVersion = apps.get_model("sampler", "ModelVersion")
        RankingTask = apps.get_model("ranking", "RankingTask")
        writer = User.objects.create(username="writer")
        version = ModelVersion.objects.create(name="policy", path="policy")

        def task(status, error=""):
            prompt, reply = _exchange(apps, writer)
            return RankingTask.objects.create(
                source_message=reply,
                prefix_message=prompt,
                model_version=version,
                source_owner=writer,
                status=status,
                error=error,
                project=None,
            ).pk

        down = task("failed", "The model server at http://x is down.")
        filtered = task("failed", "The content filter flagged the reply this task was made from.")
        ready = task("ready")
        apps = _migrate(_latest())
        RankingTask = apps.get_model("ranking", "RankingTask")
        holds = dict(RankingTask.objects.values_list("pk", "holds_source"))
        assert holds == {down: False, filtered: True, ready: True}
    finally:
        _migrate(_latest())


@pytest.mark.django_db(transaction=True)
def test_a_base_url_saved_with_credentials_loses_them_and_keeps_the_rest():
    try:
        apps = _migrate_back("sampler", "0009_model_version_name_one_line")
        ModelVersion = apps.get_model("sampler", "ModelVersion")
        options = {"model": "m", "api_key_env": "SERVER_KEY"}
        with_credentials = ModelVersion.objects.create(
            name="served",
            path="",
            backend="openai",
            backend_options={**options, "base_url": "https://me:s3cret@models.example:8000/v1"},
        ).pk
        plain = ModelVersion.objects.create(
            name="plain",
            path="",
            backend="openai",
            backend_options={**options, "base_url": "http://127.0.0.1:8000/v1?q=a@b"},
        ).pk
        apps = _migrate(_latest())
        ModelVersion = apps.get_model("sampler", "ModelVersion")
        assert ModelVersion.objects.get(pk=with_credentials).backend_options == {
            **options,
            "base_url": "https://models.example:8000/v1",
        }
        assert (
            ModelVersion.objects.get(pk=plain).backend_options["base_url"]
            == "http://127.0.0.1:8000/v1?q=a@b"
        )
    finally:
        _migrate(_latest())


@pytest.mark.django_db(transaction=True)
def test_red_team_runs_made_before_run_sets_get_theirs_and_results_keep_their_attack():
    """Runs stored before a run recorded its attacks get the set the old rule took (the newest
    ``attack_count`` made by then, and any they hold a result for); results get the category
    and last user turn of their attack, which they keep if it is withdrawn."""
    try:
        apps = _migrate_back("labeling", "0009_guidelines_per_project")
        User = apps.get_model("auth", "User")
        ModelVersion = apps.get_model("sampler", "ModelVersion")
        Project = apps.get_model("ranking", "Project")
        Attack = apps.get_model("labeling", "Attack")
        AttackRun = apps.get_model("labeling", "AttackRun")
        AttackResult = apps.get_model("labeling", "AttackResult")
        writer = User.objects.create(username="writer")
        version = ModelVersion.objects.create(name="policy", path="policy")
        project = Project.objects.create(name="Red", slug="red")

        def attack(text):
            prompt, reply = _exchange(apps, writer, prompt=text, reply="sure", project=project)
            return Attack.objects.create(
                conversation=reply.conversation,
                message=reply,
                prompt_message=prompt,
                prompt_messages=[{"role": "user", "content": text}],
                category="harmful",
                model_version=version,
                created_by=writer,
                project=project,
            )

        oldest, older, newer = attack("a"), attack("b"), attack("c")
        run = AttackRun.objects.create(
            project=project, model_version=version, attack_count=2, seed=0, requested_by=writer
        )
        AttackResult.objects.create(run=run, attack=oldest, text="no")  # resumed once, say
        late = attack("d")  # made after the run: never in its set
        apps = _migrate(_latest())
        AttackRun = apps.get_model("labeling", "AttackRun")
        AttackResult = apps.get_model("labeling", "AttackResult")
        run = AttackRun.objects.get(pk=run.pk)
        assert set(run.entries.values_list("attack_id", flat=True)) == {
            oldest.pk,
            older.pk,
            newer.pk,
        }
        assert late.pk not in set(run.entries.values_list("attack_id", flat=True))
        result = AttackResult.objects.get(run=run)
        assert (result.category, result.prompt) == ("harmful", "a")
        # Back to where a result needs its attack: a withdrawn attack's result goes.
        AttackResult.objects.filter(pk=result.pk).update(attack=None)
        apps = _migrate_back("labeling", "0011_attack_run_generation_job")
        assert not apps.get_model("labeling", "AttackResult").objects.exists()
    finally:
        _migrate(_latest())


@pytest.mark.django_db(transaction=True)
def test_sources_held_by_two_tasks_keep_one_holder_when_the_constraint_is_added():
    """Before one holder per source was a constraint, an install could hold two (gold copies
    all did): each source keeps one, a task that has not failed before one that has, the
    newest first, and gold copies give theirs up to the task they copy."""
    try:
        apps = _migrate_back("ranking", "0011_dataset_export_skipped")
        User = apps.get_model("auth", "User")
        ModelVersion = apps.get_model("sampler", "ModelVersion")
        RankingTask = apps.get_model("ranking", "RankingTask")
        writer = User.objects.create(username="writer")
        version = ModelVersion.objects.create(name="policy", path="policy")

        def source():
            return _exchange(apps, writer)[1]

        def task(reply, status, **fields):
            return RankingTask.objects.create(
                source_message=reply,
                prefix_message=reply.parent,
                model_version=version,
                source_owner=writer,
                status=status,
                project=None,
                **fields,
            )

        two_live = source()
        older = task(two_live, "complete")
        newer = task(two_live, "preparing")
        live_and_failed = source()
        ready = task(live_and_failed, "ready")
        failed_later = task(live_and_failed, "failed", error="The content filter flagged it.")
        gilded = source()
        original = task(gilded, "complete")
        copy = task(gilded, "ready", gold_of=original, gold_ordering=[[1], [2]])
        alone = task(source(), "ready")
        already_released = task(two_live, "failed", holds_source=False)

        apps = _migrate(_latest())
        RankingTask = apps.get_model("ranking", "RankingTask")
        holds = dict(RankingTask.objects.values_list("pk", "holds_source"))
        assert holds == {
            older.pk: False,
            newer.pk: True,
            ready.pk: True,
            failed_later.pk: False,
            original.pk: True,
            copy.pk: False,
            alone.pk: True,
            already_released.pk: False,
        }
    finally:
        _migrate(_latest())


@pytest.mark.django_db(transaction=True)
def test_feedback_stored_saying_nothing_is_deleted_and_the_rest_kept():
    """A thumb taken back, or an emptied report, left a row that says nothing before such rows
    were deleted as they empty: the admins' overview counted them as feedback. They go; a row
    that says anything (a thumb, a category, a comment) stays."""
    try:
        apps = _migrate_back("labeling", "0012_attack_result_outlives_withdrawal")
        User = apps.get_model("auth", "User")
        Feedback = apps.get_model("labeling", "Feedback")
        writer = User.objects.create(username="writer")
        trainers = [User.objects.create(username=f"trainer{i}") for i in range(4)]
        _, reply = _exchange(apps, writer)

        def feedback(user, **said):
            return Feedback.objects.create(user=user, message=reply, **said).pk

        empty = feedback(trainers[0])
        kept = {
            feedback(trainers[1], rating="down"),
            feedback(trainers[2], categories=["harmful"]),
            feedback(trainers[3], comment="odd"),
        }
        apps = _migrate(_latest())
        Feedback = apps.get_model("labeling", "Feedback")
        assert Feedback.objects.filter(pk=empty).count() == 0
        assert set(Feedback.objects.values_list("pk", flat=True)) == kept
    finally:
        _migrate(_latest())


@pytest.mark.django_db(transaction=True)
def test_text_stored_with_crlf_line_breaks_takes_them_as_newlines():
    """Text areas posted without htmx stored CRLF (and a lone CR) before their fields took line
    breaks as ``\\n``: the writer's turns, drafts, topics, feedback comments, guidelines and
    red-team notes saved then are normalised too. A model-written turn keeps its text: its
    recorded edit distance (and ``model``: the sample's very text) measure that text."""
    typed = "first line\r\nsecond line\rthird line"
    normalised = "first line\nsecond line\nthird line"
    try:
        apps = _migrate_back("labeling", "0014_message_model_original")
        writer = apps.get_model("auth", "User").objects.create(username="writer")
        asked, reply = _exchange(apps, writer, prompt=typed, reply=typed, instructions=typed)
        in_labeling = partial(apps.get_model, "labeling")
        in_labeling("Message").objects.filter(pk=reply.pk).update(
            origin="model_edited", edit_distance=4
        )
        project_id = asked.conversation.project_id
        draft = in_labeling("Draft").objects.create(
            conversation=asked.conversation, author=writer, content=typed
        )
        feedback = in_labeling("Feedback").objects.create(user=writer, message=reply, comment=typed)
        guidelines = in_labeling("GuidelineVersion").objects.create(
            project_id=project_id, number=1, text=typed
        )
        attack = in_labeling("Attack").objects.create(
            conversation=asked.conversation,
            message=reply,
            prompt_message=asked,
            category="harmful",
            note=typed,
            created_by=writer,
            project_id=project_id,
        )
        plain = in_labeling("Message").objects.create(
            conversation=asked.conversation, parent=reply, role="user", content="no breaks"
        )

        apps = _migrate(_latest())

        def stored(model, pk, field):
            rows = apps.get_model("labeling", model).objects.values_list(field, flat=True)
            return rows.get(pk=pk)

        assert stored("Message", asked.pk, "content") == normalised
        assert stored("Conversation", asked.conversation_id, "instructions") == normalised
        assert stored("Draft", draft.pk, "content") == normalised
        assert stored("Feedback", feedback.pk, "comment") == normalised
        assert stored("GuidelineVersion", guidelines.pk, "text") == normalised
        assert stored("Attack", attack.pk, "note") == normalised
        assert stored("Message", plain.pk, "content") == "no breaks"
        assert stored("Message", reply.pk, "content") == typed
        assert stored("Message", reply.pk, "edit_distance") == 4
    finally:
        _migrate(_latest())


@pytest.mark.django_db(transaction=True)
def test_rationales_stored_with_crlf_line_breaks_take_them_as_newlines():
    """As the writer's text (above): a ranking's rationale typed before the ranking form took
    line breaks as ``\\n``."""
    try:
        apps = _migrate_back("ranking", "0013_project_policy_plural")
        ids = _old_install(apps)
        Ranking = apps.get_model("ranking", "Ranking")
        Ranking.objects.filter(pk=ids["ranking"]).update(rationale="clearer\r\nand kinder\rtoo")
        apps = _migrate(_latest())
        stored = apps.get_model("ranking", "Ranking").objects.get(pk=ids["ranking"])
        assert stored.rationale == "clearer\nand kinder\ntoo"
    finally:
        _migrate(_latest())


@pytest.mark.django_db(transaction=True)
def test_titles_stored_with_line_breaks_are_made_one_line_and_keep_their_place():
    """A title is one line now wherever it is written; one the API or an import stored with a
    line break or another control character in it is made one line (each run of them one
    space), and its conversation's place in the list (``updated_at``) does not change."""
    try:
        apps = _migrate_back("labeling", "0015_text_line_breaks_as_newlines")
        owner = apps.get_model("auth", "User").objects.create(username="writer")
        Conversation = apps.get_model("labeling", "Conversation")
        broken = Conversation.objects.create(owner=owner, title="Trip\r\n to\u2028Porto\x1b[0m")
        blank = Conversation.objects.create(owner=owner, title="\n\t")
        plain = Conversation.objects.create(owner=owner, title="Weekend plans")
        last_edit = Conversation.objects.get(pk=broken.pk).updated_at

        apps = _migrate(_latest())

        stored = apps.get_model("labeling", "Conversation").objects
        assert stored.get(pk=broken.pk).title == "Trip to Porto [0m"
        assert stored.get(pk=broken.pk).updated_at == last_edit
        assert stored.get(pk=blank.pk).title == ""
        assert stored.get(pk=plain.pk).title == "Weekend plans"
    finally:
        _migrate(_latest())


@pytest.mark.django_db(transaction=True)
def test_token_names_stored_with_line_breaks_are_made_one_line():
    """A token's name is one line now; one stored before with a line break or another control
    character in it is made one line (each run of them one space), and one left with nothing
    gets a name."""
    try:
        apps = _migrate_back("accounts", "0003_idempotency_keys")
        owner = apps.get_model("auth", "User").objects.create(username="scripter")
        ApiToken = apps.get_model("accounts", "ApiToken")
        made = {
            name: ApiToken.objects.create(user=owner, name=name, prefix=f"tdm_{i}", key_hash=f"{i}")
            for i, name in enumerate(["nightly\r\nexport\x1b[0m", "\x1b", "curl"])
        }

        apps = _migrate(_latest())

        stored = apps.get_model("accounts", "ApiToken").objects
        names = {name: stored.get(pk=token.pk).name for name, token in made.items()}
        assert names == {
            "nightly\r\nexport\x1b[0m": "nightly export [0m",
            "\x1b": "Unnamed token",
            "curl": "curl",
        }
    finally:
        _migrate(_latest())


@pytest.mark.django_db(transaction=True)
def test_project_names_stored_with_line_breaks_are_made_one_line_and_stay_unique():
    """A project's name is one line now (ranking 0016), and every save checks it: one stored
    before with a line break or another control character in it is made one line (each run
    of them one space), so the project can be edited again. Names are unique: one that becomes
    another project's name is given the first free suffix, within the column's 200
    characters; one that becomes empty is "Untitled project"."""
    from config.text import validate_one_line

    try:
        apps = _migrate_back("ranking", "0015_undo_removal")
        Project = apps.get_model("ranking", "Project")

        def made(name):
            return Project.objects.create(name=name, slug=f"p{Project.objects.count()}").pk

        kept = made("Alpha team")
        broken = made("Alpha\r\n team")
        again = made("Alpha\tteam")
        suffix_taken = made("Beta (2)")
        beta = [made("Beta"), made("Beta\n")]
        blank = made("\n\t")
        long = "x" * 100 + " " + "x" * 99  # 200 characters, the column's most
        cut = [made(long), made(long.replace(" ", "\u2028"))]

        apps = _migrate(_latest())

        names = dict(apps.get_model("ranking", "Project").objects.values_list("pk", "name"))
        assert names[kept] == "Alpha team"
        assert names[broken] == "Alpha team (2)"
        assert names[again] == "Alpha team (3)"
        assert names[suffix_taken] == "Beta (2)"
        assert [names[pk] for pk in beta] == ["Beta", "Beta (3)"]
        assert names[blank] == "Untitled project"
        assert [names[pk] for pk in cut] == [long, long[:196] + " (2)"]
        for name in names.values():
            validate_one_line(name)
    finally:
        _migrate(_latest())


@pytest.mark.django_db(transaction=True)
def test_guideline_change_notes_stored_with_line_breaks_are_made_one_line():
    """A guidelines version's change note is one line now (labeling 0025); one stored before
    with a line break or another control character in it is made one line (each run of them
    one space), the rest of the version as it was."""
    try:
        apps = _migrate_back("labeling", "0024_draft_role")
        GuidelineVersion = apps.get_model("labeling", "GuidelineVersion")
        project = apps.get_model("ranking", "Project").objects.get(slug="default")
        notes = ["Shorter.\r\nAsk first.", "\t", "Plain note", "a\u2028b"]
        made = {
            note: GuidelineVersion.objects.create(
                project=project, number=number, text=f"# v{number}\n\nBe brief.", change_note=note
            ).pk
            for number, note in enumerate(notes, start=1)
        }

        apps = _migrate(_latest())

        stored = apps.get_model("labeling", "GuidelineVersion").objects
        assert {note: stored.get(pk=pk).change_note for note, pk in made.items()} == {
            "Shorter.\r\nAsk first.": "Shorter. Ask first.",
            "\t": "",
            "Plain note": "Plain note",
            "a\u2028b": "a b",
        }
        assert stored.get(pk=made["\t"]).text == "# v2\n\nBe brief."
    finally:
        _migrate(_latest())


@pytest.mark.django_db(transaction=True)
def test_project_names_and_slugs_that_differ_only_in_case_are_renamed_and_keep_their_data():
    """Names and slugs are unique in any letter case now (ranking 0018). Projects stored before
    with one another has in another case keep their rows: the first made keeps its name and
    slug, a later one gets the first suffix free in any case (" (2)" for a name, "-2" for a
    slug, within the column's length); the default project keeps its slug."""
    from django.db import IntegrityError, transaction

    try:
        apps = _migrate_back("ranking", "0017_undo_removal_removed_at_index")
        Project = apps.get_model("ranking", "Project")
        Conversation = apps.get_model("labeling", "Conversation")
        User = apps.get_model("auth", "User")
        owner = User.objects.create(username="writer")

        def made(name, slug):
            return Project.objects.create(name=name, slug=slug).pk

        Project.objects.filter(slug="default").delete()  # made again below, after its clash
        uni = made("Uni", "uni")
        upper = made("UNI", "UNI")
        taken_suffix = made("Uni (3)", "uni-3")
        keyboard = [made("Keyboard", "keys"), made("keyboard", "other")]
        before_default = made("Default-ish", "DEFAULT")
        default = made("Default project", "default")
        long_slug = "s" * 64
        cut = [made("Long", long_slug), made("Longer", long_slug.upper())]
        data = Conversation.objects.create(owner=owner, title="kept", project_id=upper)

        apps = _migrate(_latest())

        Project = apps.get_model("ranking", "Project")
        rows = {
            pk: (name, slug) for pk, name, slug in Project.objects.values_list("pk", "name", "slug")
        }
        assert rows[uni] == ("Uni", "uni")
        assert rows[upper] == ("UNI (2)", "UNI-2")
        assert rows[taken_suffix] == ("Uni (3)", "uni-3")
        assert [rows[pk] for pk in keyboard] == [("Keyboard", "keys"), ("keyboard (2)", "other")]
        assert rows[default] == ("Default project", "default")
        assert rows[before_default] == ("Default-ish", "DEFAULT-2")
        assert [rows[pk][1] for pk in cut] == [long_slug, long_slug.upper()[:62] + "-2"]
        Conversation = apps.get_model("labeling", "Conversation")
        assert Conversation.objects.get(pk=data.pk).project_id == upper
        for name, slug in [("uni", "fresh"), ("Fresh", "UNI")]:
            with pytest.raises(IntegrityError), transaction.atomic():
                Project.objects.create(name=name, slug=slug)
    finally:
        _migrate(_latest())


@pytest.mark.django_db(transaction=True)
def test_model_version_names_that_differ_only_in_case_are_renamed_and_keep_their_data():
    """Names are unique in any letter case now (sampler 0013). Versions stored before with one
    another has in another case keep their rows: the first registered keeps its name, a later
    one gets the first " (n)" free in any case (within the column's 200 characters), and a
    policy's metrics naming a renamed reward model name it as renamed."""
    from django.db import IntegrityError, transaction

    try:
        apps = _migrate_back("sampler", "0012_content_filter_problem")
        ModelVersion = apps.get_model("sampler", "ModelVersion")
        GenerationJob = apps.get_model("sampler", "GenerationJob")

        def made(name, **fields):
            return ModelVersion.objects.create(name=name, path="/models/x", **fields).pk

        tiny = made("Tiny-SFT")
        lower = made("tiny-sft")
        taken_suffix = made("TINY-SFT (2)")
        upper = made("TINY-SFT")
        reward = made("RM", kind="reward")
        reward_again = made("rm", kind="reward")
        against_renamed = made("ppo", metrics={"reward_version": "rm", "loss": 1.0})
        against_kept = made("ppo-2", metrics={"reward_version": "RM"})
        long_name = "n" * 200
        cut = [made(long_name), made(long_name.upper())]
        job = GenerationJob.objects.create(model_version_id=lower, n=1, seed=1)

        apps = _migrate(_latest())

        ModelVersion = apps.get_model("sampler", "ModelVersion")
        names = dict(ModelVersion.objects.values_list("pk", "name"))
        assert names[tiny] == "Tiny-SFT"
        assert names[lower] == "tiny-sft (3)"  # " (2)" is another's in another case
        assert names[taken_suffix] == "TINY-SFT (2)"
        assert names[upper] == "TINY-SFT (4)"
        assert (names[reward], names[reward_again]) == ("RM", "rm (2)")
        metrics = dict(ModelVersion.objects.values_list("pk", "metrics"))
        assert metrics[against_renamed] == {"reward_version": "rm (2)", "loss": 1.0}
        assert metrics[against_kept] == {"reward_version": "RM"}
        assert [names[pk] for pk in cut] == [long_name, long_name.upper()[:196] + " (2)"]
        GenerationJob = apps.get_model("sampler", "GenerationJob")
        assert GenerationJob.objects.get(pk=job.pk).model_version_id == lower
        assert ModelVersion.objects.count() == 10
        with pytest.raises(IntegrityError), transaction.atomic():
            ModelVersion.objects.create(name="tiny-SFT", path="/models/y")
    finally:
        _migrate(_latest())


@pytest.mark.django_db(transaction=True)
def test_verdicts_on_texts_go_when_the_schema_goes_back_to_verdicts_on_samples_alone(
    trainer, policy
):
    """Going back past sampler 0011 made the sample required again and failed on the verdicts
    on a text of their own (no sample): they are deleted, those on samples kept."""
    from tests.labeling.feedback.conftest import model_message
    from tests.sampler.conftest import suggestion_sample

    try:
        sample = suggestion_sample(trainer, policy, model_message(trainer, policy))
        apps = _migrate(_latest())
        ModerationResult = apps.get_model("sampler", "ModerationResult")
        verdict = {"filter_name": "builtin", "filter_version": "2-x", "flagged": False}
        on_sample = ModerationResult.objects.create(sample_id=sample.pk, **verdict).pk
        ModerationResult.objects.create(text_sha256="a" * 64, **verdict)
        apps = _migrate_back("sampler", "0010_base_url_without_credentials")
        ModerationResult = apps.get_model("sampler", "ModerationResult")
        assert list(ModerationResult.objects.values_list("pk", flat=True)) == [on_sample]
    finally:
        _migrate(_latest())


@pytest.mark.django_db(transaction=True)
def test_conversations_imported_before_fingerprints_get_those_of_their_imported_turns():
    """labeling 0019 gives each conversation imported before it the fingerprint of the turns
    its import saved (the first chain from its first turn, whatever was added later), so a
    later import of the same line skips it; a conversation written in the app gets none. The
    column is added without rewriting any other field."""
    from labeling.conversations.importing import ParsedMessage, conversation_fingerprint

    try:
        apps = _migrate_back("labeling", "0018_attack_result_error_permanent")
        owner = apps.get_model("auth", "User").objects.create(username="writer")
        Message = apps.get_model("labeling", "Message")
        asked, answered = _exchange(
            apps, owner, prompt="Capital of France?", reply="Paris.", title="Capitals",
            source="imported", status="finished",
        )  # fmt: skip
        answered.origin = "model"
        answered.save()
        # Written in the editor after the import: another answer beside the imported one.
        Message.objects.create(
            conversation=asked.conversation, parent=asked, role="assistant", content="Lyon.",
            origin="human", author=owner,
        )  # fmt: skip
        written, _ = _exchange(apps, owner, title="Mine", source="written")
        imported = asked.conversation

        apps = _migrate(_latest())

        Conversation = apps.get_model("labeling", "Conversation")
        stored = Conversation.objects.get(pk=imported.pk)
        assert stored.fingerprint == conversation_fingerprint(
            [
                ParsedMessage(role="user", content="Capital of France?", origin="human"),
                ParsedMessage(role="assistant", content="Paris.", origin="model"),
            ]
        )
        assert (stored.title, stored.updated_at) == ("Capitals", imported.updated_at)
        assert Conversation.objects.get(pk=written.conversation_id).fingerprint is None
    finally:
        _migrate(_latest())


@pytest.mark.django_db(transaction=True)
def test_model_replies_stored_before_text_filtering_wait_for_a_verdict_on_their_own_words():
    """labeling 0020 marks the model-written replies stored before it whose words are no
    sample's (edited from a suggestion, imported with none) as waiting for the content filter's
    verdict on their text, as a reply saved after it is; a suggestion kept as sampled and a
    human's turn are not marked."""
    try:
        apps = _migrate_back("labeling", "0019_conversation_fingerprint")
        owner = apps.get_model("auth", "User").objects.create(username="writer")
        version = apps.get_model("sampler", "ModelVersion").objects.create(
            name="policy-v1", path="/models/policy-v1"
        )
        job = apps.get_model("sampler", "GenerationJob").objects.create(
            model_version=version, requested_by=owner, status="succeeded", n=2, seed=7
        )
        Sample = apps.get_model("sampler", "Sample")
        Message = apps.get_model("labeling", "Message")
        kept, edited_from = (
            Sample.objects.create(job=job, index=i, text=text, token_count=3)
            for i, text in enumerate(("as sampled", "before the edit"))
        )
        asked, imported = _exchange(apps, owner, reply="brought in")
        imported.origin = "model"
        imported.save()
        conversation = asked.conversation
        sampled = Message.objects.create(
            conversation=conversation, parent=asked, role="assistant", content="as sampled",
            origin="model", sample=kept,
        )  # fmt: skip
        edited = Message.objects.create(
            conversation=conversation, parent=asked, role="assistant", content="after the edit",
            origin="model_edited", sample=edited_from,
        )  # fmt: skip

        apps = _migrate(_latest())

        waiting = apps.get_model("labeling", "Message").objects.filter(text_moderation_pending=True)
        assert sorted(waiting.values_list("pk", flat=True)) == sorted([imported.pk, edited.pk])
        assert {asked.pk, sampled.pk}.isdisjoint(waiting.values_list("pk", flat=True))
    finally:
        _migrate(_latest())


@pytest.mark.django_db(transaction=True)
def test_code_from_before_the_text_filter_columns_still_saves_messages():
    """A process still running code from before labeling 0020 (during an upgrade, the new
    schema migrated under it) inserts messages without the text-filter columns: the database
    fills them in (not waiting, judged by no filter) rather than refusing the row."""
    loader = MigrationExecutor(connection).loader
    old = loader.project_state(("labeling", "0019_conversation_fingerprint")).apps
    owner = old.get_model("auth", "User").objects.create(username="writer")
    _, answered = _exchange(old, owner)

    saved = loader.project_state(_latest()).apps.get_model("labeling", "Message")
    saved = saved.objects.get(pk=answered.pk)
    assert (saved.text_moderation_pending, saved.text_filter_name, saved.text_filter_version) == (
        False,
        "",
        "",
    )


@pytest.mark.django_db(transaction=True)
def test_drafts_saved_before_they_kept_their_side_are_kept_and_of_no_known_side():
    """labeling 0024 adds the side a composer's draft is typed for: a draft saved before keeps
    its text and knows no side (the editor shows it as it did), and code from before the
    column still saves drafts (the database fills it in)."""
    try:
        apps = _migrate_back("labeling", "0023_message_columns_database_defaults")
        writer = apps.get_model("auth", "User").objects.create(username="writer")
        asked, _ = _exchange(apps, writer)
        draft = apps.get_model("labeling", "Draft").objects.create(
            conversation=asked.conversation, author=writer, content="half a thought"
        )

        apps = _migrate(_latest())
        kept = apps.get_model("labeling", "Draft").objects.get(pk=draft.pk)
        assert (kept.content, kept.role) == ("half a thought", "")

        old = (
            MigrationExecutor(connection)
            .loader.project_state(("labeling", "0023_message_columns_database_defaults"))
            .apps
        )
        late = old.get_model("labeling", "Draft").objects.create(
            conversation_id=asked.conversation_id, author_id=writer.pk, editing_id=asked.pk
        )
        assert apps.get_model("labeling", "Draft").objects.get(pk=late.pk).role == ""
    finally:
        _migrate(_latest())
