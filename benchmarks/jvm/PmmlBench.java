// The timing harness shared by JpmmlBench and Pmml4sBench (benchmarks/pmml_speed.py compiles and runs them).
//
// Rows come from a Parity column file (parity/core/columns.py writes it; ParityEngine.readColumns reads
// it, called here rather than copied). Rows are scored in chunks on a fixed pool of T threads: one warm-up pass
// over every row (JIT), then timed passes; every result is kept, so no work can be optimised away.
// Prints one JSON line: {"engine", "rows", "threads", "load_s", "warmup_s", "passes_s": [...], "rows_per_s"}.
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

public final class PmmlBench {

    /** Scores one row (arguments prepared, model evaluated, results decoded); returns what the engine gives. */
    public interface Scorer {
        Object score(int row) throws Exception;
    }

    private PmmlBench() {}

    /** The columns of a Parity column file, missing numbers as null. */
    public static Map<String, Object[]> columns(String path) throws Exception {
        return ParityEngine.readColumns(Paths.get(path));
    }

    /** Usage check shared by both benches: MODEL.pmml INPUT.bin THREADS REPEATS CHUNK_ROWS. */
    public static void checkArgs(String bench, String[] args) {
        if (args.length != 5) {
            System.err.println("usage: " + bench + " MODEL.pmml INPUT.bin THREADS REPEATS CHUNK_ROWS");
            System.exit(2);
        }
    }

    public static void time(String engine, double loadSeconds, int rows, String[] args, Scorer scorer) throws Exception {
        int threads = Integer.parseInt(args[2]), repeats = Integer.parseInt(args[3]), chunk = Integer.parseInt(args[4]);
        Object[] results = new Object[rows];
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try {
            double warmup = pass(pool, scorer, results, chunk);
            List<Double> passes = new ArrayList<>();
            for (int i = 0; i < repeats; i++) passes.add(pass(pool, scorer, results, chunk));
            double best = passes.stream().mapToDouble(Double::doubleValue).min().orElse(warmup);
            int scored = 0;
            for (Object result : results) scored += result == null ? 0 : 1;
            System.out.println("{\"engine\": \"" + engine + "\", \"rows\": " + rows + ", \"scored\": " + scored
                    + ", \"threads\": " + threads + ", \"chunk_rows\": " + chunk + ", \"load_s\": " + loadSeconds
                    + ", \"warmup_s\": " + warmup + ", \"passes_s\": " + passes + ", \"rows_per_s\": " + rows / best + "}");
        } finally {
            pool.shutdownNow();
        }
    }

    static double pass(ExecutorService pool, Scorer scorer, Object[] results, int chunk) throws Exception {
        long start = System.nanoTime();
        List<Future<?>> futures = new ArrayList<>();
        for (int from = 0; from < results.length; from += chunk) {
            int first = from, last = Math.min(from + chunk, results.length);
            futures.add(pool.submit(() -> {
                for (int row = first; row < last; row++) results[row] = scorer.score(row);
                return null;
            }));
        }
        for (Future<?> future : futures) future.get();
        return (System.nanoTime() - start) / 1e9;
    }
}
