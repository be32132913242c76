"""package.xml declares only rosdep keys that exist (issue 13 item 19).

`rosdep install --from-paths src --ignore-src` fails on the first key rosdistro does not
define. The keys were looked up in rosdistro and recorded, with the commit and date, in
test/data/rosdep_keys.txt; this test holds package.xml to that record.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "test" / "data" / "rosdep_keys.txt"
DEPEND_TAGS = ("depend", "build_depend", "buildtool_depend", "exec_depend", "test_depend",
               "build_export_depend", "doc_depend")


def recorded_keys(path: Path = RECORD) -> tuple[set[str], dict[str, str]]:
    """(keys that exist, {key: why it must not be declared}) from the record."""
    existing: set[str] = set()
    refused: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("!"):
            _, key, why = line.split(None, 2)
            refused[key] = why
        else:
            existing.add(line.split()[0])
    return existing, refused


def declared_keys(path: Path = ROOT / "package.xml") -> list[str]:
    """Every dependency key package.xml names."""
    root = ET.parse(path).getroot()
    return [el.text.strip() for tag in DEPEND_TAGS for el in root.findall(tag)]


def test_record_names_its_source_and_date():
    head = RECORD.read_text()
    assert "ros/rosdistro" in head and "8468e88ccd52" in head and "2026-12-01" in head


def test_package_xml_declares_only_recorded_keys():
    existing, refused = recorded_keys()
    declared = declared_keys()
    assert declared, "package.xml declares no dependency"
    bad = {key: refused.get(key, "not in test/data/rosdep_keys.txt") for key in declared
           if key not in existing}
    assert bad == {}


def test_the_keys_of_issue_13_are_refused():
    """The keys that broke rosdep are recorded as absent (or alias), not as existing."""
    existing, refused = recorded_keys()
    for key in ("python3-safetensors-pip", "python3-open-clip-torch-pip",
                "python3-pytorch-pip", "ament_python"):
        assert key in refused and key not in existing
    assert {"python3-torch", "python3-onnxruntime-pip", "python3-rosbags-pip",
            "python3-tqdm"} <= existing


def test_the_old_package_xml_would_have_failed(tmp_path):
    """Control: the check catches the keys the issue reported."""
    old = tmp_path / "package.xml"
    old.write_text("<package format='3'><name>x</name><buildtool_depend>ament_python"
                   "</buildtool_depend><exec_depend>python3-pytorch-pip</exec_depend>"
                   "<exec_depend>python3-safetensors-pip</exec_depend></package>")
    existing, _ = recorded_keys()
    assert [k for k in declared_keys(old) if k not in existing] == [
        "ament_python", "python3-pytorch-pip", "python3-safetensors-pip"]
