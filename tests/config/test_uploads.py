"""A file posted where no page takes one is never written anywhere.

Django reads a multipart body's files into memory or a temporary file, of any size, as soon as
anything reads ``request.POST`` (the CSRF check does, on every POST, signed in or not). Only the
two pages that take a file (the Training page's upload, the admin's conversation import) read
one, under their own size limit (``config.uploads``)."""

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, RequestFactory

BIG = b"x" * (64 * 1024)


def test_a_file_posted_to_a_page_that_takes_none_is_skipped_unwritten(settings, tmp_path):
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024  # anything larger would go to a temporary file
    request = RequestFactory().post(
        "/accounts/login/",
        {"username": "ada", "junk": SimpleUploadedFile("junk.bin", BIG)},
    )

    assert request.POST["username"] == "ada"  # the rest of the form is read
    assert not request.FILES
    assert not list(tmp_path.iterdir())


def test_the_sign_in_page_still_answers_a_post_that_carries_a_file(db, settings, tmp_path):
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    response = Client().post(
        "/accounts/login/",
        {"username": "ada", "password": "wrong", "junk": SimpleUploadedFile("junk.bin", BIG)},
    )
    assert response.status_code == 200
    assert not list(tmp_path.iterdir())
