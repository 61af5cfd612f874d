"""--check-config prints the effective settings, or FILE:LINE and exit 1."""

import re
import subprocess
import tomllib

import harness


def check(path):
  return subprocess.run([str(harness.POPGUARD), "--check-config",
                         "-c", str(path)],
                        capture_output=True, text=True, timeout=30)


def write(tmp_path, text):
  path = tmp_path / "check.toml"
  path.write_text(text)
  return path


def test_prints_given_and_default_settings(config, tmp_path):
  del config["server"]["max_sessions"]
  del config["session"]
  path = write(tmp_path, harness.render_config(config))
  done = check(path)
  assert done.returncode == 0, done.stderr
  settings = tomllib.loads(done.stdout)
  assert settings["server"]["listen"] == config["server"]["listen"]
  assert settings["server"]["hostname"] == harness.HOSTNAME
  assert settings["auth"]["fail_delay_ms"] == harness.FAIL_DELAY_MS
  assert settings["auth"]["cleartext"] == "always"
  assert settings["auth"]["popauth_file"] == config["auth"]["popauth_file"]
  assert settings["privsep"]["worker_path"] == config["privsep"]["worker_path"]
  # Keys the file leaves out show their defaults.
  assert settings["server"]["max_sessions"] == 200
  assert settings["session"]["login_timeout"] == 60
  assert settings["session"]["idle_timeout"] == 600
  assert settings["session"]["max_bad_commands"] == 10
  assert settings["mailbox"]["mbox"] == "/var/mail/%u"


def test_warns_about_clear_text_everywhere(config, tmp_path):
  path = write(tmp_path, harness.render_config(config))
  done = check(path)
  assert done.returncode == 0, done.stderr
  assert "warning" in (done.stdout + done.stderr).lower()


def test_default_policy_has_no_clear_text_warning(config, tmp_path):
  del config["auth"]["cleartext"]
  path = write(tmp_path, harness.render_config(config))
  done = check(path)
  assert done.returncode == 0, done.stderr
  assert tomllib.loads(done.stdout)["auth"]["cleartext"] == "tls-only"


def test_unknown_key_names_file_and_line(config, tmp_path):
  text = harness.render_config(config)
  lines = text.splitlines()
  at = lines.index("[auth]") + 2
  lines.insert(at, "no_such_key = 1")
  path = write(tmp_path, "\n".join(lines) + "\n")
  done = check(path)
  assert done.returncode == 1
  assert f"{path}:{at + 1}:" in done.stderr + done.stdout
  assert "no_such_key" in done.stderr + done.stdout


def test_wrong_type_names_file_and_line(config, tmp_path):
  text = harness.render_config(config).replace(
      "max_failures = 3", 'max_failures = "three"')
  path = write(tmp_path, text)
  line = text.splitlines().index('max_failures = "three"') + 1
  done = check(path)
  assert done.returncode == 1
  assert f"{path}:{line}:" in done.stderr + done.stdout


def test_bad_enum_value_is_an_error(config, tmp_path):
  text = harness.render_config(config).replace(
      'cleartext = "always"', 'cleartext = "sometimes"')
  done = check(write(tmp_path, text))
  assert done.returncode == 1
  assert "cleartext" in done.stderr + done.stdout


def test_syntax_error_names_file_and_line(tmp_path):
  path = write(tmp_path, "[server]\nlisten = [\"127.0.0.1:1\"\n[auth\n")
  done = check(path)
  assert done.returncode == 1
  assert f"{path}:" in done.stderr + done.stdout


def test_missing_file_is_an_error(tmp_path):
  done = check(tmp_path / "absent.toml")
  assert done.returncode == 1
  assert "absent.toml" in done.stderr + done.stdout


def settings_named(text):
  """section.key for every setting --check-config shows, commented or not."""
  names, section = [], None
  for line in text.splitlines():
    m = re.match(r"^\[(\w+)\]$", line)
    if m:
      section = m.group(1)
      continue
    m = re.match(r"^#?\s*(\w+) = ", line)
    if m and section:
      names.append(f"{section}.{m.group(1)}")
  return names


def test_example_config_and_readme_cover_every_key():
  example = harness.SOURCE / "packaging" / "popguard.toml"
  done = check(example)
  assert done.returncode == 0, done.stderr
  names = settings_named(done.stdout)
  assert len(names) > 20
  readme = (harness.SOURCE / "README.md").read_text()
  example_text = example.read_text()
  missing_readme = [n for n in names if f"`{n}`" not in readme]
  missing_example = [
      n for n in names
      if not re.search(rf"^#?\s*{n.split('.')[1]} = ", example_text, re.M)]
  assert not missing_readme, f"README.md lacks {missing_readme}"
  # The configuration table documents each key in one row only.
  rows = [re.findall(r"`([a-z_]+\.[a-z_]+)`", line.split("|")[1])
          for line in readme.splitlines() if line.startswith("| `")]
  documented = [key for row in rows for key in row]
  twice = sorted({k for k in documented if documented.count(k) > 1})
  assert not twice, f"README.md documents {twice} more than once"
  assert not missing_example, f"packaging/popguard.toml lacks {missing_example}"
