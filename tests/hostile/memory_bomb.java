// Memory bomb that -Xmx can't see: off-heap memory through sun.misc.Unsafe, touched page by page,
// then on-heap arrays. Only the session's memory limit (cgroup, or RLIMIT_AS without cgroups) stops it.
import java.lang.reflect.Field;
import java.util.ArrayList;
import java.util.List;

public class MemoryBomb {
    public static void main(String[] args) throws Exception {
        Field f = sun.misc.Unsafe.class.getDeclaredField("theUnsafe");
        f.setAccessible(true);
        sun.misc.Unsafe unsafe = (sun.misc.Unsafe) f.get(null);
        long total = 0;
        for (int i = 0; i < 256; i++) {  // up to 4 GiB off-heap
            long block = 16L << 20;
            long p = unsafe.allocateMemory(block);
            unsafe.setMemory(p, block, (byte) 1);
            total += block;
        }
        System.out.println("allocated " + (total >> 20) + " MiB off-heap");
        List<byte[]> hoard = new ArrayList<>();
        for (;;) hoard.add(new byte[16 << 20]);
    }
}
