// Parity's evaluation engine: one long-lived JVM per target that hosts the sklearn2pmml converter, JPMML and
// PMML4S, each in a class loader of its own (their jars pin different versions of the same libraries), and
// serves jobs from several callers at once.
//
// usage: java -cp <this class> ParityEngine [--component NAME CLASS CLASSPATH]...
//
// Protocol (parity/core/warm.py speaks the other side): the engine prints READY, then reads one request per
// line, "ID<TAB>NAME.VERB<TAB>ARG...", runs it on a pool thread, and answers one line per request, in any
// order: "ID<TAB>ok<TAB>FIELDS" or "ID<TAB>error<TAB>MESSAGE". It exits when its standard input closes.
// A component is a class with "public static String job(String verb, String[] args)" (its reply fields,
// tab-separated), loaded from CLASSPATH with this JVM's application loader as parent, so it sees the
// column format and the helpers below.
//
// Rows travel in files of a small binary column format (parity/core/columns.py writes and reads it), so
// doubles cross the process boundary bit for bit, never as text.
import java.io.BufferedOutputStream;
import java.io.BufferedReader;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.File;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ForkJoinPool;

public final class ParityEngine {

    static final String MAGIC = "PARITY-COLUMNS-1";
    static final byte DOUBLE = 0, STRING = 1, LONG = 2, BOOLEAN = 3;
    /** Loaded models kept per component (least recently used are dropped). */
    static final int CACHE_SIZE = 4;

    /** Loads a model file; the component's own type. */
    public interface Loader {
        Object load(Path path) throws Exception;
    }

    /** Evaluates rows [from, to) of a job. */
    public interface RowRange {
        void run(int from, int to) throws Exception;
    }

    static final class Component {
        final ClassLoader loader;
        final Method job;

        Component(ClassLoader loader, Method job) {
            this.loader = loader;
            this.job = job;
        }
    }

    static final Map<String, Component> COMPONENTS = new LinkedHashMap<>();
    /** The process's standard error, kept before any component redirects System.err. */
    static final PrintStream FATAL = new PrintStream(new FileOutputStream(FileDescriptor.err), true);
    static final Map<String, Object> MODELS = new LinkedHashMap<>(16, 0.75f, true);
    static final Map<String, Object> LOADING = new LinkedHashMap<>();
    static ForkJoinPool rowPool;

    public static void main(String[] args) throws Exception {
        PrintStream protocol = new PrintStream(new FileOutputStream(FileDescriptor.out), true, "UTF-8");
        // Nothing a component prints may reach the protocol stream; the converter captures its own output.
        System.setOut(System.err);
        for (int i = 0; i < args.length; i += 4) {
            if (!args[i].equals("--component") || i + 3 >= args.length) {
                System.err.println("usage: ParityEngine [--component NAME CLASS CLASSPATH]...");
                System.exit(2);
            }
            COMPONENTS.put(args[i + 1], load(args[i + 2], args[i + 3]));
        }
        rowPool = new ForkJoinPool(Math.max(1, Runtime.getRuntime().availableProcessors()));
        ExecutorService jobs = Executors.newCachedThreadPool(runnable -> {
            Thread thread = new Thread(runnable, "parity-engine-job");
            thread.setDaemon(true);
            return thread;
        });
        protocol.println("READY");
        BufferedReader requests = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = requests.readLine()) != null) {
            String[] fields = line.split("\t", -1);
            jobs.submit(() -> answer(protocol, fields));
        }
        // Exit explicitly: threads a conversion left behind (a refused incident report) must not keep us alive.
        for (Component component : COMPONENTS.values()) {
            try {
                component.job.getDeclaringClass().getMethod("shutdown").invoke(null);  // e.g. lift the exit guard
            } catch (NoSuchMethodException none) {
                // nothing to undo
            }
        }
        Runtime.getRuntime().halt(0);
    }

    static Component load(String className, String classpath) throws Exception {
        List<URL> urls = new ArrayList<>();
        for (String entry : classpath.split(File.pathSeparator)) {
            if (!entry.isEmpty()) urls.add(new File(entry).toURI().toURL());
        }
        ClassLoader loader = new URLClassLoader(urls.toArray(new URL[0]), ParityEngine.class.getClassLoader());
        Class<?> type = Class.forName(className, true, loader);
        Method job = type.getMethod("job", String.class, String[].class);
        try {
            // A component may prepare the JVM before any job (the converter installs its guard here).
            withLoader(loader, () -> type.getMethod("install").invoke(null));
        } catch (NoSuchMethodException none) {
            // nothing to prepare
        }
        return new Component(loader, job);
    }

    interface Call {
        Object call() throws Exception;
    }

    static Object withLoader(ClassLoader loader, Call call) throws Exception {
        Thread thread = Thread.currentThread();
        ClassLoader before = thread.getContextClassLoader();
        thread.setContextClassLoader(loader);  // JAXB and service lookups search the context loader
        try {
            return call.call();
        } finally {
            thread.setContextClassLoader(before);
        }
    }

    static void answer(PrintStream protocol, String[] fields) {
        String id = fields[0];
        String reply;
        try {
            if (fields.length < 2) throw new IllegalArgumentException("a request needs an id and a verb");
            String[] target = fields[1].split("\\.", 2);
            Component component = COMPONENTS.get(target[0]);
            if (component == null || target.length != 2) {
                throw new IllegalArgumentException("no component for " + fields[1] + "; this engine has "
                        + String.join(", ", COMPONENTS.keySet()));
            }
            String[] args = new String[fields.length - 2];
            System.arraycopy(fields, 2, args, 0, args.length);
            Object out = withLoader(component.loader, () -> component.job.invoke(null, target[1], args));
            reply = "ok\t" + out;
        } catch (Throwable t) {
            Throwable cause = t instanceof InvocationTargetException && t.getCause() != null ? t.getCause() : t;
            if (cause instanceof VirtualMachineError) {
                // Out of memory (or worse): this JVM's state is unknown. Dying makes the client say so and
                // start a fresh engine, rather than blame the model for the engine's heap.
                cause.printStackTrace(FATAL);
                FATAL.flush();
                Runtime.getRuntime().halt(3);
            }
            reply = "error\t" + oneLine(String.valueOf(cause));
        }
        synchronized (protocol) {
            protocol.println(id + "\t" + reply);
        }
    }

    /** A message as one protocol field: no tabs or line breaks. */
    public static String oneLine(String text) {
        return text.replace('\t', ' ').replace('\n', ' ').replace('\r', ' ');
    }

    /** The model of {@code path} for {@code component}, loaded once per file state (path, size, mtime). */
    public static Object cached(String component, Path path, Loader loader) throws Exception {
        BasicFileAttributes stat = Files.readAttributes(path, BasicFileAttributes.class);
        String key = component + "\0" + path.toAbsolutePath() + "\0" + stat.fileKey() + "\0" + stat.size() + "\0"
                + stat.lastModifiedTime().to(java.util.concurrent.TimeUnit.NANOSECONDS);
        Object lock;
        synchronized (MODELS) {
            Object model = MODELS.get(key);
            if (model != null) return model;
            lock = LOADING.computeIfAbsent(key, k -> new Object());
        }
        synchronized (lock) {  // one load per file; other files load meanwhile
            synchronized (MODELS) {
                Object model = MODELS.get(key);
                if (model != null) return model;
            }
            Object model = loader.load(path);
            synchronized (MODELS) {
                MODELS.put(key, model);
                LOADING.remove(key);
                while (MODELS.size() > CACHE_SIZE * Math.max(1, COMPONENTS.size())) {
                    MODELS.remove(MODELS.keySet().iterator().next());
                }
            }
            return model;
        }
    }

    /** Run {@code body} over rows [0, rows) in at most {@code threads} contiguous ranges, in parallel. */
    public static void parallel(int rows, int threads, RowRange body) throws Exception {
        int parts = Math.max(1, Math.min(threads, rows / 256));
        if (parts == 1) {
            body.run(0, rows);
            return;
        }
        List<Future<?>> running = new ArrayList<>();
        for (int p = 0; p < parts; p++) {
            int from = (int) ((long) rows * p / parts), to = (int) ((long) rows * (p + 1) / parts);
            running.add(rowPool.submit(() -> {
                body.run(from, to);
                return null;
            }));
        }
        for (Future<?> part : running) {
            try {
                part.get();
            } catch (java.util.concurrent.ExecutionException e) {
                Throwable cause = e.getCause();
                if (cause instanceof Exception) throw (Exception) cause;
                throw e;
            }
        }
    }

    public static Map<String, Object[]> readColumns(Path path) throws IOException {
        // The whole file at once and a buffer's getDouble: DataInputStream over a BufferedInputStream takes a
        // lock per byte read, which cost more than evaluating a linear model.
        ByteBuffer in = ByteBuffer.wrap(Files.readAllBytes(path));  // big-endian, as DataOutput writes
        Map<String, Object[]> columns = new LinkedHashMap<>();
        if (!MAGIC.equals(utf(in))) throw new IOException(path + ": not a Parity column file");
        int count = in.getInt(), rows = in.getInt();
        for (int c = 0; c < count; c++) {
            String name = utf(in);
            byte type = in.get();
            Object[] values = new Object[rows];
            for (int r = 0; r < rows; r++) {
                if (type == DOUBLE) {
                    double value = in.getDouble();
                    values[r] = Double.isNaN(value) ? null : value;  // NaN is how a missing number travels
                } else {
                    values[r] = in.get() != 0 ? utf(in) : null;
                }
            }
            columns.put(name, values);
        }
        return columns;
    }

    /** A string as DataOutput.writeUTF wrote it (a 2-byte length, then modified UTF-8). */
    static String utf(ByteBuffer in) throws IOException {
        int length = in.getShort() & 0xFFFF;
        byte[] bytes = new byte[length];
        in.get(bytes);
        boolean ascii = true;
        for (byte b : bytes) ascii &= b > 0;
        if (ascii) return new String(bytes, StandardCharsets.ISO_8859_1);
        byte[] framed = new byte[length + 2];
        framed[0] = (byte) (length >> 8);
        framed[1] = (byte) length;
        System.arraycopy(bytes, 0, framed, 2, length);
        return new DataInputStream(new java.io.ByteArrayInputStream(framed)).readUTF();
    }

    public static int rowsOf(Map<String, Object[]> columns) {
        return columns.isEmpty() ? 0 : columns.values().iterator().next().length;
    }

    public static void writeOutput(Path path, String where, Map<String, Object[]> columns, int rows) throws IOException {
        Path partial = path.resolveSibling(path.getFileName() + ".partial");
        try (DataOutputStream out = new DataOutputStream(new BufferedOutputStream(new FileOutputStream(partial.toFile()), 1 << 16))) {
            out.writeUTF(MAGIC);
            out.writeUTF(where);
            out.writeInt(columns.size());
            out.writeInt(rows);
            for (Map.Entry<String, Object[]> entry : columns.entrySet()) {
                Object[] values = entry.getValue();
                byte type = typeOf(values);
                out.writeUTF(entry.getKey());
                out.writeByte(type);
                if (type == DOUBLE || type == LONG) {  // one write per column, not one locked write per byte
                    ByteBuffer block = ByteBuffer.allocate(8 * values.length);
                    for (Object value : values) {
                        if (type == DOUBLE) block.putDouble(value == null ? Double.NaN : ((Number) value).doubleValue());
                        else block.putLong(((Number) value).longValue());
                    }
                    out.write(block.array());
                    continue;
                }
                for (Object value : values) {
                    if (type == BOOLEAN) {
                        out.writeBoolean((Boolean) value);
                    } else {
                        out.writeBoolean(value != null);
                        if (value != null) out.writeUTF(value.toString());
                    }
                }
            }
        }
        Files.move(partial, path, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    /** How a column travels: integers (no missing value) as longs, booleans (none missing) as booleans,
     *  other numbers as doubles (NaN for missing), anything else as strings. */
    static byte typeOf(Object[] values) {
        boolean numeric = true, integral = true, logical = true;
        for (Object value : values) {
            numeric &= value == null || value instanceof Number;
            integral &= value instanceof Long || value instanceof Integer || value instanceof Short || value instanceof Byte;
            logical &= value instanceof Boolean;
        }
        if (values.length > 0 && integral) return LONG;
        if (values.length > 0 && logical) return BOOLEAN;
        return numeric ? DOUBLE : STRING;
    }

    /** Where this JVM runs, as the runners describe it (JSON), with the verification outcome and seconds. */
    public static String where(String verification, double seconds) {
        Map<String, String> info = new LinkedHashMap<>();
        info.put("machine", System.getProperty("os.arch"));
        info.put("os", System.getProperty("os.name") + " " + System.getProperty("os.version"));
        info.put("java", System.getProperty("java.vendor") + " " + System.getProperty("java.runtime.version"));
        info.put("processors", String.valueOf(Runtime.getRuntime().availableProcessors()));
        info.put("cpuinfo", cpuModel());
        info.put("verification", verification);
        info.put("seconds", String.valueOf(seconds));
        StringBuilder json = new StringBuilder("{");
        for (Map.Entry<String, String> e : info.entrySet()) {
            if (json.length() > 1) json.append(", ");
            json.append('"').append(e.getKey()).append("\": \"").append(escape(e.getValue())).append('"');
        }
        return json.append('}').toString();
    }

    static String cpuModel() {
        try {
            StringBuilder model = new StringBuilder();
            for (String line : Files.readAllLines(Paths.get("/proc/cpuinfo"))) {
                String key = line.split(":")[0].trim();
                if ((key.equals("model name") || key.equals("CPU part") || key.equals("CPU implementer") || key.equals("Features") || key.equals("flags"))
                        && model.indexOf(key + ":") < 0) {
                    model.append(model.length() > 0 ? "; " : "").append(key).append(": ").append(line.substring(line.indexOf(':') + 1).trim());
                }
            }
            return model.toString();
        } catch (IOException e) {
            return "unknown (" + e.getMessage() + ")";
        }
    }

    static String escape(String text) {
        return text.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n").replace("\t", "\\t");
    }
}
