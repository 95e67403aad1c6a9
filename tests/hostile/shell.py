# Spawns a shell and asks it to misbehave.
import subprocess

script = "id -u; cat /etc/shadow; ls /root /home /work; echo hi > /usr/x; exec 3<>/dev/tcp/127.0.0.1/22; echo done"
r = subprocess.run(["/bin/bash", "-c", script], capture_output=True, text=True)
print(r.stdout)
print(r.stderr)
