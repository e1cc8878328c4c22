// Parity's PMML runner: the JVM half of "one runner everywhere" (validators/runner.py is the ONNX half).
//
// usage: java -cp <jpmml-evaluator jars>:<this class> PmmlRunner MODEL.pmml INPUT.bin OUTPUT.bin
//        java -cp ... PmmlRunner --serve     (then one "MODEL<TAB>INPUT<TAB>OUTPUT" line per job on stdin;
//                                            one "ok" or "error <message>" line per job on stdout)
//
// Serving keeps one JVM warm across models: under qemu a cold JVM spends most of its time loading and
// compiling JPMML's classes, so later jobs in a warm one cost a fraction of the first.
//
// It replays the PMML's embedded verification rows (or says there are none), evaluates the input rows and
// writes the target and output fields, plus a description of where it ran (os.arch, CPU from /proc/cpuinfo, Java version).
// Rows travel in a small binary column format (validators/targets/columns.py writes and reads it), so
// doubles cross the process boundary bit for bit: never as text.
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.dmg.pmml.InlineTable;
import org.dmg.pmml.ModelVerification;
import org.jpmml.evaluator.Evaluator;
import org.jpmml.evaluator.EvaluatorUtil;
import org.jpmml.evaluator.HasModel;
import org.jpmml.evaluator.InputField;
import org.jpmml.evaluator.LoadingModelEvaluatorBuilder;
import org.jpmml.evaluator.ResultField;

public class PmmlRunner {

    static final String MAGIC = "PARITY-COLUMNS-1";
    static final byte DOUBLE = 0, STRING = 1;

    public static void main(String[] args) throws Exception {
        if (args.length == 1 && args[0].equals("--serve")) {
            serve();
            return;
        }
        if (args.length != 3) {
            System.err.println("usage: PmmlRunner MODEL.pmml INPUT.bin OUTPUT.bin | PmmlRunner --serve");
            System.exit(2);
        }
        run(args);
    }

    static void serve() throws IOException {
        java.io.BufferedReader in = new java.io.BufferedReader(new java.io.InputStreamReader(System.in, "UTF-8"));
        String line;
        while ((line = in.readLine()) != null) {
            String[] job = line.split("\t");
            String reply;
            try {
                if (job.length != 3) throw new IllegalArgumentException("expected MODEL<TAB>INPUT<TAB>OUTPUT, got " + job.length + " fields");
                run(job);
                reply = "ok";
            } catch (Exception e) {
                reply = "error " + String.valueOf(e).replace('\n', ' ').replace('\r', ' ');
            }
            System.out.println(reply);
            System.out.flush();
        }
    }

    static void run(String[] args) throws Exception {
        long start = System.nanoTime();
        Evaluator evaluator = new LoadingModelEvaluatorBuilder().load(new File(args[0])).build();
        String verification = verify(evaluator);
        Map<String, Object[]> inputs = readColumns(Paths.get(args[1]));
        int rows = inputs.isEmpty() ? 0 : inputs.values().iterator().next().length;
        List<String> names = new ArrayList<>();
        for (ResultField field : evaluator.getTargetFields()) names.add(field.getName());
        for (ResultField field : evaluator.getOutputFields()) names.add(field.getName());
        Map<String, Object[]> outputs = new LinkedHashMap<>();
        for (String name : names) outputs.put(name, new Object[rows]);
        for (int row = 0; row < rows; row++) {
            Map<String, Object> arguments = new LinkedHashMap<>();
            for (InputField field : evaluator.getInputFields()) {
                Object[] column = inputs.get(field.getName());
                arguments.put(field.getName(), field.prepare(column == null ? null : column[row]));
            }
            Map<String, ?> results = EvaluatorUtil.decodeAll(evaluator.evaluate(arguments));
            for (String name : names) outputs.get(name)[row] = results.get(name);
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        writeOutput(Paths.get(args[2]), where(verification, seconds), outputs, rows);
    }

    // "ok", "fail: <JPMML's first mismatch>", or "not embedded: ..." when the model carries no verification rows:
    // JPMML's verify() returns quietly then, which must not read as rows replayed (validators/validate.py).
    static String verify(Evaluator evaluator) {
        ModelVerification table = evaluator instanceof HasModel
                ? ((HasModel<?>) evaluator).getModel().getModelVerification() : null;
        InlineTable rows = table == null ? null : table.getInlineTable();
        if (rows == null || !rows.hasRows()) {
            return "not embedded: the PMML has no ModelVerification rows";
        }
        try {
            evaluator.verify();
            return "ok";
        } catch (Exception e) {
            return "fail: " + e;
        }
    }

    static Map<String, Object[]> readColumns(Path path) throws IOException {
        Map<String, Object[]> columns = new LinkedHashMap<>();
        try (DataInputStream in = new DataInputStream(new BufferedInputStream(new FileInputStream(path.toFile())))) {
            if (!MAGIC.equals(in.readUTF())) throw new IOException(path + ": not a Parity column file");
            int count = in.readInt(), rows = in.readInt();
            for (int c = 0; c < count; c++) {
                String name = in.readUTF();
                byte type = in.readByte();
                Object[] values = new Object[rows];
                for (int r = 0; r < rows; r++) {
                    if (type == DOUBLE) {
                        double value = in.readDouble();
                        values[r] = Double.isNaN(value) ? null : value;  // NaN is how a missing number travels
                    } else {
                        values[r] = in.readBoolean() ? in.readUTF() : null;
                    }
                }
                columns.put(name, values);
            }
        }
        return columns;
    }

    static void writeOutput(Path path, String where, Map<String, Object[]> columns, int rows) throws IOException {
        Path partial = path.resolveSibling(path.getFileName() + ".partial");
        try (DataOutputStream out = new DataOutputStream(new BufferedOutputStream(new FileOutputStream(partial.toFile())))) {
            out.writeUTF(MAGIC);
            out.writeUTF(where);
            out.writeInt(columns.size());
            out.writeInt(rows);
            for (Map.Entry<String, Object[]> entry : columns.entrySet()) {
                Object[] values = entry.getValue();
                boolean numeric = true;
                for (Object value : values) numeric &= value == null || value instanceof Number;
                out.writeUTF(entry.getKey());
                out.writeByte(numeric ? DOUBLE : STRING);
                for (Object value : values) {
                    if (numeric) {
                        out.writeDouble(value == null ? Double.NaN : ((Number) value).doubleValue());
                    } else {
                        out.writeBoolean(value != null);
                        if (value != null) out.writeUTF(value.toString());
                    }
                }
            }
        }
        Files.move(partial, path, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    static String where(String verification, double seconds) {
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
        return text.replace("\\", "\\\\").replace("\"", "\\\"");
    }
}
