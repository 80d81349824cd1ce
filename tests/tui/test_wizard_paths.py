"""The wizard's data row never holds up a key: a path typed key by key into a large tree, a
folder that vanishes while it is read, a set that is neither here nor downloadable, and the
folder picker. What reads the disk runs in the wizard's jobs; the keys are answered meanwhile."""

from __future__ import annotations

import io
import shutil

from conftest import calm, drive, error, text, until
from PIL import Image
from test_wizard import keys

from engine.config import RunConfig
from tui.datarow import FolderPicker, attempt


def image_tree(root, classes: int, per_class: int, folders: int = 1):
    """``classes`` class folders, each of ``folders`` sub-folders of ``per_class`` tiny PNGs
    (one image's bytes, copied): a class's images may lie at any depth."""
    png = io.BytesIO()
    Image.new("L", (4, 4), 128).save(png, format="PNG")
    for c in range(classes):
        for f in range(folders):
            folder = root / f"class_{c:03d}" / f"part_{f:02d}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                (folder / f"{i}.png").write_bytes(png.getvalue())
    return root


async def image_folder_task(pilot, screen):
    """Highlight the image-folder task and Tab into its data row, as a person would."""
    tasks = screen.query_one("#tasks")
    tasks.highlighted = tasks.get_option_index("image-folder")
    await calm(pilot, screen)
    await pilot.press("tab")
    assert screen.focused.id == "data_dir"
    return screen.focused


def info(screen) -> str:
    return text(screen.query_one("#task-info"))


def test_a_path_typed_key_by_key_into_a_large_tree_shows_every_key_and_is_read_in_a_job(tmp_path, monkeypatch):
    image_tree(tmp_path / "data" / "big", classes=10, per_class=5, folders=30)  # 300 folders, 1500 images
    monkeypatch.chdir(tmp_path)
    path = "data/big"

    async def scenario(pilot, screen):
        field = await image_folder_task(pilot, screen)
        for end in range(1, len(path) + 1):
            await pilot.press(path[end - 1])
            assert field.value == path[:end]  # each key is in the field before the next is pressed
        assert screen.later.busy and "samples" not in info(screen)  # the folder is left to a job
        assert "reading the data" in info(screen)
        await calm(pilot, screen)
        assert "1500 samples" in info(screen) and "10 classes" in info(screen)
        assert error(screen, "data_dir") == ""
        await keys(pilot, screen, "enter")
        assert screen.step == "model"

    drive(tmp_path, scenario, size=(80, 24))


def test_a_folder_that_vanishes_once_typed_is_a_message_on_its_row(tmp_path, monkeypatch):
    big = image_tree(tmp_path / "data" / "going", classes=40, per_class=5)
    monkeypatch.chdir(tmp_path)

    async def scenario(pilot, screen):
        await image_folder_task(pilot, screen)
        await pilot.press(*"data/going")  # a name of its own: the wizard keeps what it loaded per path
        shutil.rmtree(big)  # before or while it is scanned: either way it is told, never a crash
        await calm(pilot, screen)
        assert "data/going" in error(screen, "data_dir")
        assert pilot.app.is_running and pilot.app.screen is screen
        await keys(pilot, screen, "enter")  # refused: the cursor stays on the row
        assert screen.step == "task" and screen.focused.id == "data_dir"
        image_tree(big, classes=2, per_class=10)  # back again: a key reads it anew
        await keys(pilot, screen, "backspace", "g")
        assert error(screen, "data_dir") == "" and "20 samples" in info(screen)

    drive(tmp_path, scenario, size=(80, 24))


def test_a_set_neither_here_nor_downloadable_is_one_line_without_a_flag(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("TORCHDECK_DATA", str(empty))  # no cache: nothing to find, and no network is needed

    async def scenario(pilot, screen):
        pilot.app.new_run(RunConfig.for_task("mnist", out=str(tmp_path), data_dir=str(empty)))
        await pilot.pause()
        screen = pilot.app.screen
        await calm(pilot, screen)
        tasks = screen.query_one("#tasks")
        assert tasks.highlighted_option.id == "mnist"
        message = error(screen, "data_dir")
        assert str(empty) in message and "\n" not in message and "--" not in message
        await keys(pilot, screen, "up")  # the list still answers
        assert tasks.highlighted_option.id == "digits"

    drive(tmp_path, scenario, size=(80, 24))


def test_the_folder_picker_types_the_chosen_folder_into_the_row(tmp_path):
    image_tree(tmp_path / "photos", classes=2, per_class=10)

    async def scenario(pilot, screen):
        field = await image_folder_task(pilot, screen)
        field.value = str(tmp_path)
        await calm(pilot, screen)
        await pilot.press("ctrl+o")
        await until(pilot, lambda: isinstance(pilot.app.screen, FolderPicker))
        picker = pilot.app.screen
        tree = picker.query_one("#folders")
        await until(pilot, lambda: tree.root.children)  # the tree lists the folder in its own job
        tree.move_cursor(next(node for node in tree.root.children if node.data.path.name == "photos"))
        await pilot.press("enter")
        await until(pilot, lambda: pilot.app.screen is screen)
        await calm(pilot, screen)
        assert field.value == str(tmp_path / "photos") and screen.focused is field
        assert "20 samples" in info(screen) and "2 classes" in info(screen)

    drive(tmp_path, scenario, size=(80, 24))


def test_a_file_gone_under_a_scan_is_a_message_for_the_data_row(tmp_path):
    gone = tmp_path / "class_a" / "0.png"  # what a scan meets when a folder vanishes under it
    value, option, problem = attempt(lambda: gone.open("rb"))
    assert value is None and option == "data_dir"
    assert problem == f"data_dir: {gone} changed while it was read (No such file or directory); try again"
