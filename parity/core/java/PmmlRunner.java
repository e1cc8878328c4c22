// Parity's JPMML component of the engine (parity/core/java/ParityEngine.java): the JVM half of "one runner
// everywhere" (validators/runner.py is the ONNX half). It runs in the engine's JVM on this host and in the
// engine under emulation, in a class loader that holds JPMML-Evaluator's jars.
//
// Jobs (ParityEngine calls job(verb, args); rows in and out as ParityEngine's binary column files):
//   evaluate MODEL INPUT OUTPUT THREADS  -> "FAILED<TAB>FIRST-ROW<TAB>FIRST-MESSAGE" (0, -1, "" when every
//                                           row was evaluated); the target and output fields to OUTPUT
//   verify MODEL                         -> "ok" | "fail: <JPMML's first mismatch>" | "not embedded: ..."
//   run MODEL INPUT OUTPUT THREADS       -> verify, then evaluate (any failed row fails the job), then write
//                                           OUTPUT with a description of where it ran (os.arch, CPU, Java)
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;

import org.dmg.pmml.InlineTable;
import org.dmg.pmml.ModelVerification;
import org.jpmml.evaluator.Evaluator;
import org.jpmml.evaluator.EvaluatorUtil;
import org.jpmml.evaluator.HasModel;
import org.jpmml.evaluator.InputField;
import org.jpmml.evaluator.LoadingModelEvaluatorBuilder;
import org.jpmml.evaluator.ResultField;

public final class PmmlRunner {

    public static String job(String verb, String[] args) throws Exception {
        switch (verb) {
            case "evaluate": {
                need(verb, args, 4);
                Result result = evaluate(evaluator(args[0]), Paths.get(args[1]), Integer.parseInt(args[3]));
                ParityEngine.writeOutput(Paths.get(args[2]), "{}", result.outputs, result.rows);
                return result.failed + "\t" + result.firstRow + "\t" + ParityEngine.oneLine(result.firstMessage);
            }
            case "verify":
                need(verb, args, 1);
                return ParityEngine.oneLine(verify(evaluator(args[0])));
            case "run": {
                need(verb, args, 4);
                long start = System.nanoTime();
                Evaluator evaluator = evaluator(args[0]);
                String verification = verify(evaluator);
                Result result = evaluate(evaluator, Paths.get(args[1]), Integer.parseInt(args[3]));
                if (result.failed > 0) {
                    throw new IllegalArgumentException(result.failed + " row(s) could not be evaluated; first, row "
                            + result.firstRow + ": " + result.firstMessage);
                }
                double seconds = (System.nanoTime() - start) / 1e9;
                ParityEngine.writeOutput(Paths.get(args[2]), ParityEngine.where(verification, seconds), result.outputs, result.rows);
                return "done";
            }
            default:
                throw new IllegalArgumentException("the JPMML component has no job " + verb + " (evaluate, verify, run)");
        }
    }

    static void need(String verb, String[] args, int count) {
        if (args.length != count) throw new IllegalArgumentException(verb + " takes " + count + " arguments, got " + args.length);
    }

    static Evaluator evaluator(String path) throws Exception {
        return (Evaluator) ParityEngine.cached(
                "jpmml", Paths.get(path), p -> new LoadingModelEvaluatorBuilder().load(p.toFile()).build());
    }

    static final class Result {
        final Map<String, Object[]> outputs;
        final int rows;
        int failed, firstRow = -1;
        String firstMessage = "";

        Result(Map<String, Object[]> outputs, int rows) {
            this.outputs = outputs;
            this.rows = rows;
        }

        synchronized void failure(int row, Exception e) {
            failed++;
            if (firstRow < 0 || row < firstRow) {
                firstRow = row;
                firstMessage = String.valueOf(e);
            }
        }
    }

    static Result evaluate(Evaluator evaluator, Path input, int threads) throws Exception {
        Map<String, Object[]> inputs = ParityEngine.readColumns(input);
        int rows = ParityEngine.rowsOf(inputs);
        List<String> names = new ArrayList<>();
        // A model without a target field (clusterers, outlier detectors) has one unnamed "default" target:
        // its results are in the output fields, so it is left out.
        for (ResultField field : evaluator.getTargetFields()) if (field.getName() != null) names.add(field.getName());
        for (ResultField field : evaluator.getOutputFields()) names.add(field.getName());
        Map<String, Object[]> outputs = new LinkedHashMap<>();
        for (String name : names) outputs.put(name, new Object[rows]);
        List<? extends InputField> fields = evaluator.getInputFields();
        Result result = new Result(outputs, rows);
        ParityEngine.parallel(rows, threads, (from, to) -> {
            for (int row = from; row < to; row++) {
                Map<String, Object> arguments = new LinkedHashMap<>();
                try {
                    for (InputField field : fields) {
                        Object[] column = inputs.get(field.getName());
                        arguments.put(field.getName(), field.prepare(column == null ? null : column[row]));
                    }
                    Map<String, ?> results = EvaluatorUtil.decodeAll(evaluator.evaluate(arguments));
                    for (String name : names) outputs.get(name)[row] = results.get(name);
                } catch (Exception e) {
                    result.failure(row, e);
                }
            }
        });
        return result;
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
}
