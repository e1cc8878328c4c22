// Plain-Java JPMML-Evaluator on a Parity column file, T threads: the baseline of benchmarks/pmml_speed.py.
//
// usage: java -cp <PmmlBench + ParityEngine classes>:<jpmml_evaluator's jars> JpmmlBench MODEL.pmml INPUT.bin THREADS REPEATS CHUNK_ROWS
// Per row, the work Parity's runner does (parity/core/java/PmmlRunner.java): prepare each input field,
// evaluate, decode every target and output field.
import java.io.File;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.jpmml.evaluator.Evaluator;
import org.jpmml.evaluator.EvaluatorUtil;
import org.jpmml.evaluator.InputField;
import org.jpmml.evaluator.LoadingModelEvaluatorBuilder;

public class JpmmlBench {

    public static void main(String[] args) throws Exception {
        PmmlBench.checkArgs("JpmmlBench", args);
        long start = System.nanoTime();
        Evaluator evaluator = new LoadingModelEvaluatorBuilder().load(new File(args[0])).build();
        double load = (System.nanoTime() - start) / 1e9;
        Map<String, Object[]> columns = PmmlBench.columns(args[1]);
        List<InputField> fields = evaluator.getInputFields();
        Object[][] inputs = new Object[fields.size()][];
        for (int f = 0; f < inputs.length; f++) {
            inputs[f] = columns.get(fields.get(f).getName());
            if (inputs[f] == null) throw new IllegalArgumentException("no column " + fields.get(f).getName() + " in " + args[1]);
        }
        int rows = inputs.length == 0 ? 0 : inputs[0].length;
        PmmlBench.time("jpmml", load, rows, args, row -> {
            Map<String, Object> arguments = new LinkedHashMap<>();
            for (int f = 0; f < inputs.length; f++) {
                InputField field = fields.get(f);
                arguments.put(field.getName(), field.prepare(inputs[f][row]));
            }
            return EvaluatorUtil.decodeAll(evaluator.evaluate(arguments));
        });
    }
}
