import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.security.Permission;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;

/**
 * Keeps one JVM warm for many sklearn2pmml conversions.
 *
 * <p>Protocol, one line each way. Request: the arguments of {@code com.sklearn2pmml.Main}, separated by
 * tabs. Reply: {@code STATUS \t EXIT \t LOG \t BLOCKED}, where STATUS is OK or FAIL, EXIT is the code Main
 * passed to System.exit or "-", LOG is the base64 (UTF-8) of everything printed or logged during the
 * request, and BLOCKED is the base64 of the refused destinations ("host:port", or the URL of an HTTP
 * request), one per line. The server writes READY once it can take requests; it exits when stdin closes.
 */
@SuppressWarnings("removal") // SecurityManager: the one hook that can veto System.exit on Java 17-23
public final class ParityConverterServer {

    /** Thrown instead of exiting, so that Main's failure path unwinds back to us with its code. */
    static final class ExitTrapped extends SecurityException {
        private static final long serialVersionUID = 1L;
        final int status;

        ExitTrapped(int status) {
            super("System.exit(" + status + ") trapped by ParityConverterServer");
            this.status = status;
        }
    }

    /**
     * Traps System.exit and refuses every network use that could leave the machine: sklearn2pmml posts an
     * incident report over HTTPS when a conversion fails, and a converter must never send data away.
     * Everything else is allowed, as it would be without a security manager.
     */
    static final class Guard extends SecurityManager {
        private final List<String> blocked = new ArrayList<>();
        private volatile boolean exitAllowed;

        @Override
        public void checkExit(int status) {
            if (!exitAllowed) {
                throw new ExitTrapped(status);
            }
        }

        @Override
        public void checkConnect(String host, int port) {
            // port -1 is a name lookup: refusing it keeps even the DNS query on the machine.
            if (!isLoopback(host)) {
                refuse(host + ":" + port);
            }
        }

        @Override
        public void checkConnect(String host, int port, Object context) {
            checkConnect(host, port);
        }

        @Override
        public void checkPermission(Permission perm) {
            // Nothing in the conversion may swap this guard for a laxer one.
            if (perm instanceof RuntimePermission && perm.getName().equals("setSecurityManager")) {
                throw new SecurityException("ParityConverterServer keeps its SecurityManager");
            }
            // java.net.http checks a URLPermission for the target before it talks to any proxy, so a
            // proxy on loopback cannot be used to tunnel the report out.
            if (perm instanceof java.net.URLPermission && !isLoopback(urlHost(perm.getName()))) {
                refuse(perm.getName());
            }
        }

        @Override
        public void checkPermission(Permission perm, Object context) {
            checkPermission(perm);
        }

        private void refuse(String what) {
            synchronized (blocked) {
                blocked.add(what);
            }
            throw new SecurityException("ParityConverterServer refuses network access to " + what);
        }

        List<String> drainBlocked() {
            synchronized (blocked) {
                List<String> copy = new ArrayList<>(blocked);
                blocked.clear();
                return copy;
            }
        }

        /** The host of a URLPermission name such as "https://host:443/path" ("" when there is none). */
        static String urlHost(String url) {
            int start = url.indexOf("://") + 3;
            int end = start;
            while (end < url.length() && "/:?#".indexOf(url.charAt(end)) < 0) {
                end++;
            }
            return url.startsWith("[", start) ? url.substring(start, url.indexOf(']', start) + 1)
                    : url.substring(start, end);
        }

        /** Decides from the text alone: resolving a name here would itself be a network lookup. */
        static boolean isLoopback(String host) {
            String h = host.startsWith("[") ? host.substring(1, host.length() - 1) : host;
            // Only literals: a name such as "127.0.0.1.example.com" would need a DNS query to resolve.
            return h.equalsIgnoreCase("localhost") || h.matches("127(\\.\\d{1,3}){3}") || h.equals("::1")
                    || h.equals("0:0:0:0:0:0:0:1");
        }
    }

    static ByteArrayOutputStream capture;
    /** True on the thread running a conversion (and the threads it starts): its output is the log. */
    static final InheritableThreadLocal<Boolean> CONVERTING = new InheritableThreadLocal<Boolean>() {
        @Override
        protected Boolean initialValue() {
            return false;
        }
    };
    static PrintStream captured;
    static Guard guard;

    /**
     * Captures everything printed in this JVM and installs the guard; idempotent. Called before Main loads:
     * its java.util.logging ConsoleHandler binds System.err when Main's static initialiser creates it.
     * Parity's engine (parity/core/java/ParityEngine.java) calls it when it loads this class as a component.
     */
    public static synchronized void install() throws Exception {
        if (guard != null) {
            return;
        }
        capture = new ByteArrayOutputStream();
        captured = new PrintStream(capture, true, "UTF-8");
        // What a conversion prints goes to its log; what other threads print (the engine's evaluations, their
        // errors) to the process's standard error, where the engine's client reads a dying JVM's last words.
        PrintStream elsewhere = new PrintStream(new FileOutputStream(FileDescriptor.err), true, "UTF-8");
        PrintStream routed = new PrintStream(new java.io.OutputStream() {
            @Override
            public void write(int b) {
                (CONVERTING.get() ? captured : elsewhere).write(b);
            }

            @Override
            public void write(byte[] data, int offset, int length) {
                (CONVERTING.get() ? captured : elsewhere).write(data, offset, length);
            }
        }, true, "UTF-8");
        System.setOut(routed);
        System.setErr(routed);
        guard = new Guard();
        System.setSecurityManager(guard);
    }

    /** The engine's entry point: job "convert" with Main's arguments; the reply fields of the protocol. */
    public static String job(String verb, String[] args) throws Exception {
        if (!verb.equals("convert")) {
            throw new IllegalArgumentException("the converter has no job " + verb + " (convert)");
        }
        install();
        return convert(args);
    }

    /** One conversion: {@code STATUS \t EXIT \t LOG \t BLOCKED} (see the class comment). */
    static synchronized String convert(String[] args) {
        capture.reset();
        guard.drainBlocked();
        String status = "OK";
        String exit = "-";
        CONVERTING.set(true);
        try {
            com.sklearn2pmml.Main.main(args);
        } catch (ExitTrapped trapped) {
            status = trapped.status == 0 ? "OK" : "FAIL";
            exit = Integer.toString(trapped.status);
        } catch (Throwable t) {
            // Main's failure path posts an incident report and catches only IOException around it, so
            // the refusal of that post escapes here before Main reaches System.exit. Also: bad arguments.
            status = "FAIL";
            StringWriter trace = new StringWriter();
            t.printStackTrace(new PrintWriter(trace));
            captured.print(trace);
        } finally {
            CONVERTING.set(false);
        }
        captured.flush();
        byte[] log = capture.toByteArray();
        String blocked = String.join("\n", guard.drainBlocked());
        Base64.Encoder b64 = Base64.getEncoder();
        return status + "\t" + exit + "\t" + b64.encodeToString(log) + "\t"
                + b64.encodeToString(blocked.getBytes(StandardCharsets.UTF_8));
    }

    /** Lets the JVM exit (the engine calls it when its input ends). */
    public static synchronized void shutdown() {
        if (guard != null) {
            guard.exitAllowed = true;
        }
    }

    public static void main(String[] args) throws Exception {
        PrintStream protocol = new PrintStream(new FileOutputStream(FileDescriptor.out), true, "UTF-8");
        // Everything else printed in this JVM lands in the capture buffer, so stray output can never
        // corrupt the protocol.
        install();
        protocol.println("READY");

        BufferedReader requests =
                new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = requests.readLine()) != null) {
            protocol.println(convert(line.split("\t", -1)));
        }
        guard.exitAllowed = true;
        // Exit explicitly: HTTP client threads left by a refused report must not keep the JVM alive.
        System.exit(0);
    }
}
