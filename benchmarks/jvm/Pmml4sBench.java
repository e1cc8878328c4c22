// Plain PMML4S (the engine pypmml wraps) on a Parity column file, T threads: a baseline of benchmarks/pmml_speed.py.
//
// usage: java -cp <PmmlBench + ParityEngine classes>:<pypmml's jars> Pmml4sBench MODEL.pmml INPUT.bin THREADS REPEATS CHUNK_ROWS
// Per row: the input values in the model's inputNames() order, Model.predict(Object[]) → every output
// field's value (PMML4S models are read-only and thread-safe: autodeployai/pmml4s#14).
import java.util.Map;

import org.pmml4s.model.Model;

public class Pmml4sBench {

    public static void main(String[] args) throws Exception {
        PmmlBench.checkArgs("Pmml4sBench", args);
        long start = System.nanoTime();
        Model model = Model.fromFile(args[0]);
        double load = (System.nanoTime() - start) / 1e9;
        Map<String, Object[]> columns = PmmlBench.columns(args[1]);
        String[] names = model.inputNames();
        Object[][] inputs = new Object[names.length][];
        for (int f = 0; f < names.length; f++) {
            inputs[f] = columns.get(names[f]);
            if (inputs[f] == null) throw new IllegalArgumentException("no column " + names[f] + " in " + args[1]);
        }
        int rows = inputs.length == 0 ? 0 : inputs[0].length;
        PmmlBench.time("pmml4s", load, rows, args, row -> {
            Object[] values = new Object[inputs.length];
            for (int f = 0; f < inputs.length; f++) values[f] = inputs[f][row];
            return model.predict((Object) values);
        });
    }
}
