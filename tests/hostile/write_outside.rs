// Tries to leave a file (named on stdin) in host places and system directories, and to reach
// the host through /proc. Prints "wrote <dir>" or "denied <dir>" for each, and "LEFTOVER <dir>"
// when an earlier run's file is still there (runs must not see each other's writes).
use std::fs;
use std::io::{Read, Write};

fn main() {
    let mut name = String::new();
    std::io::stdin().read_to_string(&mut name).unwrap();
    let name = name.trim();
    let dirs = ["/tmp", "/", "/usr", "/usr/bin", "/etc", "/root", "/home", "/work", "/box", "/var/tmp",
                "/dev/shm", "/proc/1/root/tmp", "/proc/self/root/tmp", ".."];
    for d in dirs.iter() {
        let path = format!("{}/{}", d, name);
        if fs::metadata(&path).is_ok() {
            println!("LEFTOVER {}", d);
        }
        match fs::File::create(&path).and_then(|mut f| f.write_all(b"escaped?")) {
            Ok(_) => println!("wrote {}", d),
            Err(e) => println!("denied {} {}", d, e),
        }
    }
    // Symlinks and hard links out of the work dir lead nowhere new either.
    let _ = std::os::unix::fs::symlink("/etc/passwd", "link");
    match fs::OpenOptions::new().append(true).open("link") {
        Ok(_) => println!("wrote /etc/passwd through a symlink"),
        Err(e) => println!("denied /etc/passwd through a symlink {}", e),
    }
}
